// The actor of W1-spawn's variant `spawn-actor-first-call`.
import { Actor } from "../../lib/actor/actor.ts";

/** Answers with what it is given. */
export class Echo extends Actor {
  echo(x: number): number {
    return x;
  }
}
