// Mirrors the tutorial's `print(multiprocessing.__all__)` and `print(threading.__all__)`: the
// names each module offers. This prints, for each of those Python names, the denomp export it
// maps to (looked up in mod.ts at run time, so the list cannot go stale), or why there is none.
//
// Look for: "multiprocessing.Process -> Process", "threading.current_thread -> currentThread",
// and the summary line "N of M names have a denomp counterpart".
import * as denomp from "../mod.ts";

// deno-fmt-ignore
const multiprocessingAll = [
  "Array", "AuthenticationError", "Barrier", "BoundedSemaphore", "BufferTooShort", "Condition",
  "Event", "JoinableQueue", "Lock", "Manager", "Pipe", "Pool", "Process", "ProcessError", "Queue",
  "RLock", "RawArray", "RawValue", "Semaphore", "SimpleQueue", "TimeoutError", "Value",
  "active_children", "allow_connection_pickling", "cpu_count", "current_process",
  "freeze_support", "get_all_start_methods", "get_context", "get_logger", "get_start_method",
  "log_to_stderr", "reducer", "set_executable", "set_forkserver_preload", "set_start_method",
];

// deno-fmt-ignore
const threadingAll = [
  "get_ident", "active_count", "Condition", "current_thread", "enumerate", "main_thread",
  "TIMEOUT_MAX", "Event", "Lock", "RLock", "Semaphore", "BoundedSemaphore", "Thread", "Barrier",
  "BrokenBarrierError", "Timer", "ThreadError", "setprofile", "settrace", "local", "stack_size",
];

/** Why a Python name has no denomp counterpart. */
const noCounterpart: Record<string, string> = {
  allow_connection_pickling: "connections can always be sent",
  freeze_support: "only needed for frozen Windows executables",
  get_all_start_methods: "workers are always started fresh (spawn)",
  get_context: "workers are always started fresh (spawn)",
  get_start_method: "workers are always started fresh (spawn)",
  set_start_method: "workers are always started fresh (spawn)",
  set_executable: "workers run in the same Deno",
  set_forkserver_preload: "no fork server",
  get_logger: "use console / std/log",
  log_to_stderr: "use console / std/log",
  reducer: "see registerHandle for custom handles",
  TIMEOUT_MAX: "timeouts are plain millisecond numbers",
  ThreadError: "misuse throws ValueError",
  setprofile: "use Deno's profiler",
  settrace: "use Deno's debugger",
  stack_size: "V8 manages stacks",
};

/** snake_case to camelCase: `current_process` -> `currentProcess`. */
function camel(name: string): string {
  return /^[a-z]/.test(name) ? name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()) : name;
}

const exported = denomp as Record<string, unknown>;
let found = 0, total = 0;

function show(module: string, names: string[]) {
  console.log(`--- ${module} ---`);
  for (const name of names) {
    total++;
    const js = camel(name);
    if (js in exported) {
      found++;
      console.log(`${module}.${name} -> ${js}`);
    } else {
      console.log(`${module}.${name} -> (none: ${noCounterpart[name] ?? "not in denomp yet"})`);
    }
  }
}

if (import.meta.main) {
  show("multiprocessing", multiprocessingAll);
  show("threading", threadingAll);
  console.log(`${found} of ${total} names have a denomp counterpart`);
}
