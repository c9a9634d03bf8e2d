/**
 * Closed-loop load: C clients, each sending its next request as soon as the previous one is answered, for a
 * fixed time and never more than a fixed number of requests. Every request is recorded (when it started,
 * how long it took, its status, and how it was served).
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';

/** How one request was served: from the cache, by asking Entra (or waiting for someone who did), or not at all. */
export type Outcome = 'hit' | 'miss' | 'error';

/** Every request of one run, as parallel arrays (a run records hundreds of thousands). */
export interface RunRecord {
  /** Wall clock (epoch ms) when the run began. */
  startedAt: number;
  durationMs: number;
  /** Start of each request, ms since the run began. */
  t: number[];
  latencyMs: number[];
  /** HTTP status; 0 for a network error or timeout. */
  status: number[];
  /** What the call reported about its answer (the benchmark uses the index of the token received); -1 if nothing. */
  tag: number[];
}

export interface DriveOptions {
  concurrency: number;
  seconds: number;
  /** Upper bound on requests over all clients, whatever the time. */
  maxRequests: number;
  /** Sends one request for client `index`. */
  call: (index: number) => Promise<{ status: number; tag: number }>;
}

/** Runs the load and returns what every request did. */
export async function drive(options: DriveOptions): Promise<RunRecord> {
  const record: RunRecord = {
    startedAt: Date.now(),
    durationMs: 0,
    t: [],
    latencyMs: [],
    status: [],
    tag: [],
  };
  const origin = performance.now();
  const end = origin + options.seconds * 1000;
  let sent = 0;

  async function client(index: number): Promise<void> {
    while (sent < options.maxRequests && performance.now() < end) {
      sent++;
      const started = performance.now();
      let answer = { status: 0, tag: -1 };
      try {
        answer = await options.call(index);
      } catch {
        // recorded as status 0
      }
      record.t.push(started - origin);
      record.latencyMs.push(performance.now() - started);
      record.status.push(answer.status);
      record.tag.push(answer.tag);
    }
  }

  await Promise.all(Array.from({ length: options.concurrency }, (_, i) => client(i)));
  record.durationMs = performance.now() - origin;
  return record;
}

/** Keep-alive HTTP to one broker. */
export class BrokerClient {
  private readonly agent: http.Agent;
  constructor(
    private readonly port: number,
    maxSockets: number,
  ) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets });
  }

  /** Sends one request to 127.0.0.1; rejects on a network error or after `timeoutMs`. */
  request(method: string, path: string, timeoutMs = 30_000): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: this.port, method, path, agent: this.agent, timeout: timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
