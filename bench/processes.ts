/**
 * The benchmark's child processes and cleanup. Every broker is spawned in its own process group (tsx starts
 * node as a child), so stopping a broker signals exactly that group, never anything the benchmark did not start.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';

/** Cleanup steps, run once, in reverse order of registration. */
const cleanups: Array<{ what: string; run: () => Promise<void> }> = [];
let cleaning: Promise<void> | undefined;

/** Registers a cleanup step (stopping a server, removing a directory). */
export function onCleanup(what: string, run: () => Promise<void>): void {
  cleanups.push({ what, run });
}

/** Runs every cleanup step once; errors are reported and do not stop the other steps. */
export function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const step of cleanups.reverse()) {
      try {
        await step.run();
      } catch (error) {
        process.stderr.write(`cleanup of ${step.what} failed: ${String(error)}\n`);
      }
    }
  })();
  return cleaning;
}

/** Signals a process group the benchmark started; false when it is already gone. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): boolean {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return false;
  try {
    process.kill(-child.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** Stops a process group: SIGTERM, then SIGKILL after `graceMs`. */
async function stopGroup(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (!signalGroup(child, 'SIGTERM')) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const timedOut = delay(graceMs).then(() => 'timeout' as const);
  if ((await Promise.race([exited, timedOut])) === 'timeout') signalGroup(child, 'SIGKILL');
}

/** A broker process (`tsx local/server.ts`) listening on 127.0.0.1:`port`. */
export interface BrokerProcess {
  port: number;
  url: string;
  child: ChildProcess;
}

/**
 * Starts one broker with `env` added to this process's environment; its output goes to `logFile`. It runs in one
 * node process (tsx as an import hook rather than the tsx CLI, which would run the server in a grandchild) with an
 * IPC channel to the probe of bench/cpu-probe.ts, for {@link cpuMsOf}.
 */
export function spawnBroker(port: number, env: Record<string, string>, logFile: string): BrokerProcess {
  const fd = openSync(logFile, 'a');
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env, PORT: String(port), HOST: '127.0.0.1' };
  // Each broker embeds its own Secrets Manager server over the shared data dir, and seeds nothing.
  for (const name of Object.keys(childEnv)) {
    if (name.startsWith('AZURE_AD_') || name === 'AWS_ENDPOINT_URL_SECRETS_MANAGER') delete childEnv[name];
  }
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--import', './bench/cpu-probe.ts', 'local/server.ts'],
    { env: childEnv, stdio: ['ignore', fd, fd, 'ipc'], detached: true },
  );
  closeSync(fd);
  const broker = { port, url: `http://127.0.0.1:${port}`, child };
  onCleanup(`broker on port ${port}`, () => stopGroup(child));
  return broker;
}

/** Waits until the broker answers HTTP (any status), failing after `timeoutMs` or when it exits. */
export async function waitUntilServing(broker: BrokerProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (broker.child.exitCode !== null) throw new Error(`broker on port ${broker.port} exited`);
    try {
      await fetch(`${broker.url}/api/v2/system/service`, { signal: AbortSignal.timeout(1000) });
      return;
    } catch {
      await delay(200);
    }
  }
  throw new Error(`broker on port ${broker.port} did not start within ${timeoutMs} ms`);
}

/** CPU time (user + system, ms) the broker process has used so far, as its own `process.cpuUsage()` reports. */
export function cpuMsOf(broker: BrokerProcess, timeoutMs = 10_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      broker.child.off('message', onMessage);
      reject(new Error(`broker on port ${broker.port} did not report its CPU usage`));
    }, timeoutMs);
    const onMessage = (message: unknown) => {
      const usage = (message as { cpuUsage?: NodeJS.CpuUsage } | null)?.cpuUsage;
      if (!usage) return;
      clearTimeout(timer);
      broker.child.off('message', onMessage);
      resolve((usage.user + usage.system) / 1000);
    };
    broker.child.on('message', onMessage);
    broker.child.send('cpu-usage');
  });
}
