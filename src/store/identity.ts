import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';

import { describeError, LumaError } from '../errors.js';
import { createFileExclusive, ensureDataDir, isErrnoException, removeStaleTempFiles } from './files.js';

/** Accepted instance ids. This module writes 12 lower-case hex characters (48 random bits). */
const INSTANCE_ID_PATTERN = /^[a-z0-9]{6,32}$/;

/** Shortest API token accepted from the environment or the token file. */
const MIN_TOKEN_LENGTH = 16;

export interface ApiToken {
  token: string;
  /** `env`: LUMA_API_TOKEN; `file`: read from `path`; `created`: written to `path` on this start. */
  source: 'env' | 'file' | 'created';
  /** Token file, or null when the token came from the environment. */
  path: string | null;
  /** Problems to log, such as a token file readable by other users. Never contains the token. */
  warnings: string[];
}

/**
 * Returns the id of this Luma instance from `<dataDir>/instance-id`, creating the file with a
 * random id on first start. The id goes into the labels of every container, so that several
 * Luma instances can share one Docker engine.
 * Rejects with `store_corrupt` when the file contains anything other than an id.
 */
export async function loadOrCreateInstanceId(dataDir: string): Promise<string> {
  const filePath = path.join(dataDir, 'instance-id');
  await prepare(filePath);

  const existing = await readOptional(filePath);
  if (existing !== undefined) return checkInstanceId(filePath, existing);

  const created = randomBytes(6).toString('hex');
  if (await createOrFail(filePath, `${created}\n`, 0o644)) return created;
  // Another process created the file between the read and the create.
  return checkInstanceId(filePath, (await readOptional(filePath)) ?? '');
}

/**
 * Returns the API token: `LUMA_API_TOKEN` when set and not empty, else the content of
 * `<dataDir>/api-token`. On first start the file is created with a random 32-byte hex token and
 * mode 0600. Rejects with `invalid_setting` for a short LUMA_API_TOKEN and with `store_corrupt`
 * for an unusable token file; neither message contains the token.
 */
export async function loadOrCreateApiToken(dataDir: string, env: NodeJS.ProcessEnv): Promise<ApiToken> {
  const fromEnv = env.LUMA_API_TOKEN;
  if (fromEnv !== undefined && fromEnv !== '') {
    const problem = tokenProblem(fromEnv);
    if (problem !== undefined) {
      throw new LumaError('invalid_setting', `invalid LUMA_API_TOKEN: ${problem}; generate one with: openssl rand -hex 32`, {
        details: { setting: 'LUMA_API_TOKEN' },
      });
    }
    return { token: fromEnv, source: 'env', path: null, warnings: [] };
  }

  const filePath = path.join(dataDir, 'api-token');
  await prepare(filePath);

  const existing = await readOptional(filePath);
  if (existing === undefined) {
    const created = randomBytes(32).toString('hex');
    if (await createOrFail(filePath, `${created}\n`, 0o600)) {
      return { token: created, source: 'created', path: filePath, warnings: [] };
    }
  }

  const token = (existing ?? (await readOptional(filePath)) ?? '').trim();
  const problem = tokenProblem(token);
  if (problem !== undefined) {
    throw new LumaError('store_corrupt', `unusable API token file ${filePath}: ${problem}; delete it to create a new token on start`, {
      details: { path: filePath },
    });
  }
  return { token, source: 'file', path: filePath, warnings: await permissionWarnings(filePath) };
}

function tokenProblem(token: string): string | undefined {
  if (token.length < MIN_TOKEN_LENGTH) return `must be at least ${MIN_TOKEN_LENGTH} characters`;
  if (/[\s\u0000-\u001f\u007f]/.test(token)) return 'must not contain whitespace or control characters';
  return undefined;
}

function checkInstanceId(filePath: string, content: string): string {
  const id = content.trim();
  if (!INSTANCE_ID_PATTERN.test(id)) {
    throw new LumaError(
      'store_corrupt',
      `${filePath} does not contain an instance id (6-32 lower-case letters and digits); restore it from a backup, ` +
        'because containers of this instance are labelled with the id',
      { details: { path: filePath } },
    );
  }
  return id;
}

async function prepare(filePath: string): Promise<void> {
  await ensureDataDir(path.dirname(filePath));
  await removeStaleTempFiles(filePath).catch((error: unknown) => {
    throw new LumaError('store_corrupt', `failed to list ${path.dirname(filePath)}: ${describeError(error)}`, { cause: error });
  });
}

async function readOptional(filePath: string): Promise<string | undefined> {
  try {
    return await readFile(filePath, 'utf8');
  } catch (error) {
    if (isErrnoException(error, 'ENOENT')) return undefined;
    throw new LumaError('store_corrupt', `failed to read ${filePath}: ${describeError(error)}`, {
      cause: error,
      details: { path: filePath },
    });
  }
}

async function createOrFail(filePath: string, content: string, mode: number): Promise<boolean> {
  try {
    return await createFileExclusive(filePath, content, mode);
  } catch (error) {
    throw new LumaError('store_write_failed', `failed to create ${filePath}: ${describeError(error)}`, {
      cause: error,
      details: { path: filePath },
    });
  }
}

async function permissionWarnings(filePath: string): Promise<string[]> {
  const { mode } = await stat(filePath);
  if ((mode & 0o077) === 0) return [];
  const octalMode = (mode & 0o777).toString(8).padStart(4, '0');
  return [`API token file ${filePath} has mode ${octalMode}, so other users may read it; run chmod 600 ${filePath}`];
}
