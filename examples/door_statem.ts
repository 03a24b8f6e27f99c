// A state machine actor (Erlang's gen_statem, Akka's Behaviors): a door that is locked or open.
// Each state is a handler; `become` switches to another for the next messages, and a message
// the current state does not take is deferred with `stash()` and handled after `unstashAll()`,
// in its original order, by the new state. The door is registered by name: whoever knows the
// name finds it with `whereis`, in any worker.
//
//   deno run -A --unstable-worker-options examples/door_statem.ts
//
// Look for: alice and bob wait at the locked door, a wrong code is refused, and once the door
// is unlocked they walk through in the order they came.
import { Actor } from "../lib/actor/actor.ts";
import { spawn } from "../lib/actor/spawn.ts";
import { whereis } from "../lib/actor/registry.ts";

/** What a door understands, in any state. */
export type DoorMsg =
  | { kind: "push"; who: string } // walk through: only an open door lets anybody through
  | { kind: "unlock"; code: string }
  | { kind: "lock" }
  | { kind: "state" };

/** A door with a code. Starts locked: `receive` is the locked state, `open` the other one. */
export class Door extends Actor {
  passed: string[] = [];
  constructor(readonly code: string) {
    super();
  }

  /** State "locked". */
  receive(msg: DoorMsg): string {
    switch (msg.kind) {
      case "unlock":
        if (msg.code !== this.code) return "wrong code";
        this.become(this.open);
        this.unstashAll(); // whoever waited goes through now, first come first
        return "unlocked";
      case "push":
        this.stash(); // not now: the caller's ask is answered once the door is open
        return "";
      case "lock":
        return "locked already";
      case "state":
        return "locked";
    }
  }

  /** State "open". */
  open(msg: DoorMsg): string {
    switch (msg.kind) {
      case "push":
        this.passed.push(msg.who);
        return `${msg.who} walked through`;
      case "lock":
        this.become(null); // back to `receive`: locked
        return "locked";
      case "unlock":
        return "open already";
      case "state":
        return "open";
    }
  }

  /** Who walked through, in order. */
  log(): string[] {
    return this.passed;
  }
}

if (import.meta.main) {
  await spawn(Door, { args: ["1234"], name: "front-door", register: true });
  const door = whereis<Door>("front-door")!;
  console.log(`the door is ${await door.ask({ kind: "state" })}`);
  // Alice and Bob arrive at the locked door: their pushes wait, stashed.
  const alice = door.ask({ kind: "push", who: "alice" });
  const bob = door.ask({ kind: "push", who: "bob" });
  console.log(`wrong code: ${await door.ask({ kind: "unlock", code: "0000" })}`);
  console.log(`the door is ${await door.ask({ kind: "state" })}`);
  console.log(`right code: ${await door.ask({ kind: "unlock", code: "1234" })}`);
  console.log(await alice);
  console.log(await bob);
  console.log(`the door is ${await door.ask({ kind: "state" })}`);
  console.log(`carol: ${await door.ask({ kind: "push", who: "carol" })}`);
  console.log(`lock: ${await door.ask({ kind: "lock" })}`);
  console.log(`the door is ${await door.ask({ kind: "state" })}`);
  console.log(`passed: ${(await door.call.log()).join(", ")}`);
  await door.stop();
  console.log(`after stop, whereis("front-door") is ${whereis("front-door")}`);
}
