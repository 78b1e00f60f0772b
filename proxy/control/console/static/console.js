// recproxy console: progressive enhancement only; every page works without it except
// what is live by nature.  Nothing is loaded from anywhere but this server.
"use strict";
