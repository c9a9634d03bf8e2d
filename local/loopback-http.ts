/** Starting and stopping the local servers' HTTP listeners (AWS JSON services, STS). */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Where a local server listens: 127.0.0.1 and a free port unless told otherwise. */
export interface ListenOptions {
  /** Interface to listen on; 127.0.0.1 by default. */
  host?: string;
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
}

/** Starts listening and returns the base URL to give a client, e.g. `http://127.0.0.1:4566`. */
export async function listenLocally(server: Server, options: ListenOptions): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}

/** Stops listening and closes open connections at once (SDK clients keep theirs alive; close() would wait). */
export function closeNow(server: Server): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()));
    server.closeAllConnections();
  });
}
