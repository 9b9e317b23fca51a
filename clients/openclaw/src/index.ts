// openclaw loads this file (package.json `openclaw.extensions`). No runtime import from openclaw:
// the entry is the plain object definePluginEntry would return, so the plugin works with whichever
// openclaw copy loads it.
import { register } from "./plugin.js";

export default {
  id: "authbroker",
  name: "authbroker",
  description: "authbroker chooses the credential per chat session and hears every boundary and outcome.",
  register,
};
