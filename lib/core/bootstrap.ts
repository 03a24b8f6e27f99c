// The module every denomp worker starts from: it waits for its start message and runs the
// child side of the protocol in spawn.ts.
import { workerMain } from "./spawn.ts";

workerMain();
