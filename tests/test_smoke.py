from tests.helpers import select


def test_it_answers_the_first_profile_for_a_new_session(anthropic, api):
    """A new session gets the first available profile in order."""
    answer = select(api)
    assert answer["profile"] == "anthropic:default"
    assert answer["source"] == "default"
