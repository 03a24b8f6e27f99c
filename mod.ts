/**
 * denomp: Python's `multiprocessing`, `threading` and `queue` for Deno, on Web Workers.
 *
 * Processes, pools, queues, pipes, locks, shared memory, managers and actors, with the names a
 * Python user expects. See README.md for a tour.
 *
 * @module
 */

export * from "./lib/errors.ts";
export * from "./lib/process.ts";
export { setSpares, type SpareOptions, spareOptions } from "./lib/_spares.ts";
export * from "./lib/threading.ts";
export * from "./lib/synchronize.ts";
export * from "./lib/sharedctypes.ts";
export * from "./lib/shared_memory.ts";
export * from "./lib/queues.ts";
export * from "./lib/typed.ts";
export * from "./lib/connection.ts";
export * as pickle from "./lib/pickle.ts";
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
} from "./lib/reduction.ts";
export {
  type ApplyOptions,
  AsyncResult,
  type IMapOptions,
  type MapOptions,
  Pool,
  type PoolOptions,
  type TaskOptions,
  transfer,
} from "./lib/pool.ts";
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
} from "./lib/futures.ts";
export * from "./lib/managers.ts";
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
} from "./lib/actor.ts";
export * from "./lib/supervisor.ts";
// Issue 22: names (Erlang's register/whereis) and timers at the top level, as Erlang's BIFs;
// process groups under `pg`, as Erlang's `pg:join(...)` (`join` alone reads as a process join).
export { type CallOptions } from "./lib/actor.ts";
export { register, registered, unregister, whereis } from "./lib/registry.ts";
export * as pg from "./lib/groups.ts";
export { cancelTimer, sendAfter, TimerRef } from "./lib/timers.ts";
// Issue 16: observability.
export {
  type CycleStep,
  type LockSnapshot,
  type ProcessSnapshot,
  setDeadlockDetection,
  type Snapshot,
  snapshot,
} from "./lib/snapshot.ts";
export { type Dashboard, type DashboardOptions, serveDashboard } from "./lib/dashboard.ts";
