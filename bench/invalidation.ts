/**
 * Goal 5's memory bound, measured: every broker serves the token (so each holds it in memory), one broker answers a
 * DELETE of the cached tokens, and every broker is then asked again and again until it serves another token. The
 * figure is the longest time after the DELETE was answered at which any broker still served the token it served
 * before (0 when none did). test/integration/memory-bound.test.ts proves the bound for the other changes (PATCH,
 * rotation, switch-off, deletion); they reach the memory tier the same way, through its re-read of the flow.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import type { BrokerClient } from './load';

const accessTokenOf = (status: number, body: string): string | undefined => {
  if (status !== 200) return undefined;
  try {
    return (JSON.parse(body) as { access_token?: string }).access_token;
  } catch {
    return undefined;
  }
};

/** Milliseconds after the DELETE's answer that a broker last served its old token; gives up after `giveUpMs`. */
export async function staleAfterDelete(
  clients: BrokerClient[],
  tokenPath: string,
  giveUpMs = 10_000,
): Promise<number> {
  const before = await Promise.all(
    clients.map(async (c) => {
      await c.request('GET', tokenPath);
      const { status, body } = await c.request('GET', tokenPath);
      return accessTokenOf(status, body);
    }),
  );
  const deleted = await (clients[0] as BrokerClient).request('DELETE', tokenPath);
  if (deleted.status !== 200) throw new Error(`DELETE of the cached tokens answered ${deleted.status}`);
  const answeredAt = performance.now();
  let worst = 0;
  await Promise.all(
    clients.map(async (c, i) => {
      for (;;) {
        const { status, body } = await c.request('GET', tokenPath);
        const elapsed = performance.now() - answeredAt;
        if (accessTokenOf(status, body) !== before[i]) return;
        worst = Math.max(worst, elapsed);
        if (elapsed > giveUpMs) return;
        await delay(10);
      }
    }),
  );
  return worst;
}
