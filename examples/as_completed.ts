// Ports the two examples of Python's `concurrent.futures` documentation:
//
// 1. ThreadPoolExecutor with the usual `as_completed` loop: five URLs are "loaded" at once (a
//    simulated load: 1-3 s each, one host does not exist), a Map takes each future back to its
//    URL, and each result is printed as soon as it is ready, fastest first.
//
//        with ThreadPoolExecutor(max_workers=5) as executor:
//            future_to_url = {executor.submit(load_url, url, 60): url for url in URLS}
//            for future in as_completed(future_to_url):
//                url = future_to_url[future]
//                try:
//                    data = future.result()
//                except Exception as exc:
//                    print('%r generated an exception: %s' % (url, exc))
//                else:
//                    print('%r page is %d bytes' % (url, len(data)))
//
// 2. ProcessPoolExecutor: is_prime over six large numbers, in worker processes, with
//    `executor.map` (results in input order). The task is exported, and the main program sits
//    under `if (import.meta.main)`, because workers import this module.
//
// Look for: in part 1, five lines in order of their delays (the failing host among them) and
// "all done in" about 3 s, not the 10 s of one after the other; in part 2, six "is prime" lines
// in input order (five true, 1099726899285419 false).
import { asCompleted, type Future, ProcessPoolExecutor, ThreadPoolExecutor } from "../mod.ts";
import { sleep, stopwatch } from "./_util.ts";

const URLS = [
  "http://www.foxnews.com/",
  "http://www.cnn.com/",
  "http://europe.wsj.com/",
  "http://www.bbc.co.uk/",
  "http://nonexistant-subdomain.python.org/",
];
/** How long each simulated load takes (tutorial seconds). */
const DELAYS = [3, 1, 2, 1.5, 2.5];

/** Stands in for `urllib.request.urlopen(url, timeout).read()` (no network needed). */
async function loadUrl(url: string, _timeout: number): Promise<Uint8Array> {
  await sleep(DELAYS[URLS.indexOf(url)] * 1000);
  if (url.includes("nonexistant")) throw new Error(`getaddrinfo failed for ${new URL(url).host}`);
  return new Uint8Array(1000 * url.length);
}

async function loadAll(): Promise<void> {
  const spent = stopwatch();
  await using executor = new ThreadPoolExecutor({ maxWorkers: 5 });
  const futureToUrl = new Map<Future<Uint8Array>, string>(
    URLS.map((url) => [executor.submit(loadUrl, url, 60), url]),
  );
  for await (const future of asCompleted(futureToUrl.keys())) {
    const url = futureToUrl.get(future as Future<Uint8Array>);
    try {
      const data = await future.result();
      console.log(`'${url}' page is ${data.length} bytes`);
    } catch (exc) {
      console.log(`'${url}' generated an exception: ${(exc as Error).message}`);
    }
  }
  console.log(`all done in ${spent()} s`);
}

const PRIMES = [
  112272535095293,
  112582705942171,
  112272535095293,
  115280095190773,
  115797848077099,
  1099726899285419,
];

export function isPrime(n: number): boolean {
  if (n < 2) return false;
  if (n === 2) return true;
  if (n % 2 === 0) return false;
  const sqrtN = Math.floor(Math.sqrt(n));
  for (let i = 3; i <= sqrtN; i += 2) if (n % i === 0) return false;
  return true;
}

async function primes(): Promise<void> {
  await using executor = new ProcessPoolExecutor();
  let i = 0;
  for await (const prime of executor.map(isPrime, PRIMES)) {
    console.log(`${PRIMES[i++]} is prime: ${prime}`);
  }
}

if (import.meta.main) {
  console.log("--- 1. ThreadPoolExecutor + asCompleted ---");
  await loadAll();
  console.log("--- 2. ProcessPoolExecutor.map ---");
  await primes();
}
