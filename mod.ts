/**
 * denomp: Python's `multiprocessing`, `threading` and `queue` for Deno, on Web Workers.
 *
 * Processes, pools, queues, pipes, locks, shared memory, managers and actors, with the names a
 * Python user expects. See README.md for a tour.
 *
 * @module
 */

export * from "./lib/core/errors.ts";
export * from "./lib/process/process.ts";
export { setSpares, type SpareOptions, spareOptions } from "./lib/core/spares.ts";
export * from "./lib/core/threading.ts";
export * from "./lib/sync/mod.ts";
export * from "./lib/memory/sharedctypes.ts";
export * from "./lib/memory/shared_memory.ts";
export * from "./lib/queues/queues.ts";
export * from "./lib/queues/typed.ts";
export {
  BrokenPipeError,
  type BytesLike,
  Connection,
  OSError,
  type Serializer,
} from "./lib/connection/connection.ts";
export { Pipe, type PipeOptions } from "./lib/connection/pipe.ts";
export { DEFAULT_MAX_MESSAGE, type SocketOptions, wrapSocket } from "./lib/connection/socket.ts";
export {
  answerChallenge,
  type AuthKey,
  deliverChallenge,
  type Digest,
} from "./lib/connection/auth.ts";
export {
  type Address,
  Client,
  type ClientOptions,
  Listener,
  type ListenerOptions,
} from "./lib/connection/listener.ts";
export * as pickle from "./lib/pickle/pickle.ts";
export {
  type CodecOptions,
  Decoder,
  dumps,
  type EncodeOptions,
  Encoder,
  type HandleKind,
  loads,
  loadsAsync,
  registerHandle,
} from "./lib/core/reduction.ts";
export {
  type ApplyOptions,
  type IMapOptions,
  type MapOptions,
  Pool,
  type PoolOptions,
  type TaskOptions,
} from "./lib/pool/pool.ts";
export { AsyncResult } from "./lib/pool/async_result.ts";
export { transfer } from "./lib/pool/worker.ts";
export {
  ALL_COMPLETED,
  asCompleted,
  BrokenProcessPool,
  type Completed,
  type DoneAndNotDone,
  Executor,
  type ExecutorMapOptions,
  FIRST_COMPLETED,
  FIRST_EXCEPTION,
  Future,
  type FuturesWaitOptions,
  ProcessPoolExecutor,
  type ProcessPoolExecutorOptions,
  type ShutdownOptions,
  ThreadPoolExecutor,
  type ThreadPoolExecutorOptions,
  wait,
  type Waitable,
} from "./lib/futures/futures.ts";
export * from "./lib/managers/managers.ts";
export { Actor, type ActorClass } from "./lib/actor/actor.ts";
export { ActorExited, type ExitReason, isNormalExit } from "./lib/actor/exit.ts";
export {
  type ActorMethods,
  ActorRef,
  type MessageOf,
  type RemoteMethod,
  type ReplyOf,
} from "./lib/actor/ref.ts";
export { currentActor } from "./lib/actor/self.ts";
export { type Exiting, link, monitor, type MonitorOptions, unlink } from "./lib/actor/link.ts";
export {
  Mailbox,
  type MailboxOptions,
  type MailboxReceiveOptions,
  type MailboxSendOptions,
} from "./lib/actor/mailbox.ts";
export { shutdown, spawn, type SpawnOptions } from "./lib/actor/spawn.ts";
export * from "./lib/actor/supervisor.ts";
// Issue 22: names (Erlang's register/whereis) and timers at the top level, as Erlang's BIFs;
// process groups under `pg`, as Erlang's `pg:join(...)` (`join` alone reads as a process join).
export { type CallOptions } from "./lib/actor/call.ts";
export { register, registered, unregister, whereis } from "./lib/actor/registry.ts";
export * as pg from "./lib/actor/groups.ts";
export { cancelTimer, sendAfter, TimerRef } from "./lib/actor/timers.ts";
// Issue 16: observability.
export {
  type CycleStep,
  type LockSnapshot,
  type ProcessSnapshot,
  setDeadlockDetection,
  type Snapshot,
  snapshot,
} from "./lib/observe/snapshot.ts";
export { type Dashboard, type DashboardOptions, serveDashboard } from "./lib/observe/dashboard.ts";
