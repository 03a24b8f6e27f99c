// The module every denomp worker starts from: it waits for its start message and runs the
// child side of the protocol (child.ts; the parent side, spawn.ts, is not loaded).
import { workerMain } from "./child.ts";

workerMain();
