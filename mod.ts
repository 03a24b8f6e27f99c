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
export * from "./lib/sync/synchronize.ts";
export * from "./lib/memory/sharedctypes.ts";
export * from "./lib/memory/shared_memory.ts";
export * from "./lib/queues/queues.ts";
export * from "./lib/queues/typed.ts";
export * from "./lib/connection/connection.ts";
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
export {
  Actor,
  type ActorClass,
  ActorExited,
  type ActorMethods,
  ActorRef,
  currentActor,
  type ExitReason,
  isNormalExit,
  link,
  Mailbox,
  type MailboxOptions,
  type MailboxReceiveOptions,
  type MailboxSendOptions,
  type MessageOf,
  monitor,
  type MonitorOptions,
  type RemoteMethod,
  type ReplyOf,
  shutdown,
  spawn,
  type SpawnOptions,
  unlink,
} from "./lib/actor/actor.ts";
export * from "./lib/actor/supervisor.ts";
// Issue 22: names (Erlang's register/whereis) and timers at the top level, as Erlang's BIFs;
// process groups under `pg`, as Erlang's `pg:join(...)` (`join` alone reads as a process join).
export { type CallOptions } from "./lib/actor/actor.ts";
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
