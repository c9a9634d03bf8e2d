/**
 * The file handling shared by the local AWS servers' stores (KMS keys, Secrets Manager secrets): a private
 * directory per service under the data directory, JSON files of mode 0600 that appear whole (written to a temp
 * file first), and reads that never let a parser's message (which quotes the contents) reach a log.
 */
import { randomUUID } from 'node:crypto';
import { chmod, link, mkdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** A failure of a service's local store itself (corrupt file, lock timeout); its message is safe to log. */
export class LocalStoreError extends Error {
  override name = 'LocalStoreError';
}

/** Duck-typed: errors from Node's core are not `instanceof Error` inside Jest's sandbox. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { code } = error as { code?: unknown };
  return typeof code === 'string' ? code : undefined;
}

/** For `.catch()` of a removal: a file that is already gone is fine, anything else is not. */
export function ignoreMissingFile(error: unknown): void {
  if (errnoCode(error) !== 'ENOENT') throw error;
}

/** `${dataDir}/${name}`, created if needed, and of mode 0700 either way (mkdir's mode applies only on creation). */
export async function privateDirectory(dataDir: string, name: string): Promise<string> {
  const directory = path.join(dataDir, name);
  await mkdir(directory, { recursive: true, mode: 0o700 });
  await chmod(directory, 0o700);
  return directory;
}

/** The parsed file, or undefined when it does not exist; a file that is not JSON is named, never quoted. */
export async function readJsonFile<T>(filePath: string): Promise<T | undefined> {
  let contents: string;
  try {
    contents = await readFile(filePath, 'utf8');
  } catch (error) {
    ignoreMissingFile(error);
    return undefined;
  }
  try {
    return JSON.parse(contents) as T;
  } catch {
    throw new LocalStoreError(`${path.basename(filePath)} is not valid JSON`);
  }
}

/** A fresh temp file name beside `filePath`, never matched by the stores' own file patterns. */
export function tempPathFor(filePath: string): string {
  return path.join(path.dirname(filePath), `.${path.basename(filePath)}.${randomUUID()}.tmp`);
}

/** Writes `value` as a temp file of mode 0600, then runs `publish(tempPath)`; the temp file never stays. */
async function withTempFile<T>(filePath: string, value: unknown, publish: (tempPath: string) => Promise<T>) {
  const tempPath = tempPathFor(filePath);
  try {
    await writeFile(tempPath, `${JSON.stringify(value)}\n`, { mode: 0o600, flag: 'wx' });
    return await publish(tempPath);
  } finally {
    await unlink(tempPath).catch(ignoreMissingFile);
  }
}

/** Replaces `filePath` in one step, so a reader in any process sees the old or the new file, never half of one. */
export async function writeJsonFileAtomically(filePath: string, value: unknown): Promise<void> {
  await withTempFile(filePath, value, (tempPath) => rename(tempPath, filePath));
}

/**
 * Creates `filePath` unless it exists, and says whether it did. link() fails with EEXIST when the target exists
 * and is atomic, also across processes; unlike an O_EXCL create it never exposes an empty file.
 */
export async function createJsonFileOnce(filePath: string, value: unknown): Promise<boolean> {
  return withTempFile(filePath, value, async (tempPath) => {
    try {
      await link(tempPath, filePath);
      return true;
    } catch (error) {
      if (errnoCode(error) === 'EEXIST') return false;
      throw error;
    }
  });
}
