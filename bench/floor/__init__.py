"""The floor `make bench` divides by: the least a Django request that reads one row can cost.

A minimal Django project on the same stack as authbroker (Django, psycopg with the same
connection options, gunicorn with the same worker settings): no middleware, no apps, one
URL whose view reads one session row by primary key through a cursor and answers JSON.
Started by bench/run.py as `gunicorn bench.floor.wsgi:application`.
"""
