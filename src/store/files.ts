import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';

import { LumaError } from '../errors.js';

/**
 * Crash-safe file writes in the data directory. A crash leaves either the old file or the new
 * one, never a mix, plus at most a temp file named `<name>.<random>.tmp` that
 * `removeStaleTempFiles` deletes on the next start.
 */

/** Creates the data directory with mode 0700 when missing; an existing directory keeps its mode. */
export async function ensureDataDir(dataDir: string): Promise<void> {
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new LumaError('store_write_failed', `failed to create data directory ${dataDir}; check that its parent is writable`, {
      cause: error,
      details: { path: dataDir },
    });
  }
}

/**
 * Replaces `filePath` with `data`: writes a temp file in the same directory, fsyncs it, renames
 * it over the target and fsyncs the directory so that the rename survives a power loss.
 * Rejects with the file system error; the temp file is removed on failure.
 */
export async function writeFileAtomic(filePath: string, data: string, mode: number): Promise<void> {
  const tempPath = await writeTempFile(filePath, data, mode);
  try {
    await rename(tempPath, filePath);
  } catch (error) {
    await rm(tempPath, { force: true });
    throw error;
  }
  await fsyncDirectory(path.dirname(filePath));
}

/**
 * Creates `filePath` with `data` unless it exists, without ever exposing a partly written file:
 * the content goes to a temp file that is then hard-linked to the target, which fails if the
 * target exists. Returns false when the file already existed.
 */
export async function createFileExclusive(filePath: string, data: string, mode: number): Promise<boolean> {
  const tempPath = await writeTempFile(filePath, data, mode);
  try {
    await link(tempPath, filePath);
  } catch (error) {
    if (isErrnoException(error, 'EEXIST')) return false;
    throw error;
  } finally {
    await rm(tempPath, { force: true });
  }
  await fsyncDirectory(path.dirname(filePath));
  return true;
}

/** Deletes temp files that an interrupted write of `filePath` left behind. Returns their names. */
export async function removeStaleTempFiles(filePath: string): Promise<string[]> {
  const directory = path.dirname(filePath);
  const prefix = `${path.basename(filePath)}.`;
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (error) {
    if (isErrnoException(error, 'ENOENT')) return [];
    throw error;
  }

  const stale = names.filter((name) => name.startsWith(prefix) && name.endsWith('.tmp'));
  for (const name of stale) await rm(path.join(directory, name), { force: true });
  return stale;
}

export function isErrnoException(error: unknown, code: string): error is NodeJS.ErrnoException {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

async function writeTempFile(filePath: string, data: string, mode: number): Promise<string> {
  const tempPath = `${filePath}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(tempPath, 'wx', mode);
  try {
    await handle.writeFile(data, 'utf8');
    await handle.sync();
  } catch (error) {
    await handle.close();
    await rm(tempPath, { force: true });
    throw error;
  }
  await handle.close();
  return tempPath;
}

async function fsyncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
