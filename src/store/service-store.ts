import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { describeError, LumaError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ServiceSpec } from '../model.js';
import { ensureDataDir, isErrnoException, removeStaleTempFiles, writeFileAtomic } from './files.js';
import { SERVICES_FILE_VERSION, servicesFileSchema, type ServicesFile } from './schema.js';

export interface ServiceStoreOptions {
  dataDir: string;
  logger: Logger;
}

/** Mode of services.json: service env values may contain secrets. */
const FILE_MODE = 0o600;

/**
 * Registered services, persisted in `<dataDir>/services.json` as
 * `{ "version": 1, "services": [ServiceSpec, ...] }`.
 *
 * Every change rewrites the whole file atomically (see files.ts), one change at a time in call
 * order. The in-memory copy changes only after the file is written, so a failed write leaves both
 * at the previous state. Specs go in and out as copies.
 *
 * NOTE: nothing stops two Luma processes from sharing a data directory; the last writer wins.
 */
export class ServiceStore {
  readonly path: string;
  private readonly dataDir: string;
  private readonly logger: Logger;
  private services: Map<string, ServiceSpec> | undefined;
  private writeQueue: Promise<unknown> = Promise.resolve();

  constructor(options: ServiceStoreOptions) {
    this.dataDir = options.dataDir;
    this.path = path.join(options.dataDir, 'services.json');
    this.logger = options.logger.child({ component: 'store' });
  }

  /**
   * Reads services.json, creating the data directory when missing; a missing file means no
   * services. Deletes temp files of interrupted writes.
   * Rejects with `store_corrupt` when the file cannot be read or parsed, so that Luma never
   * starts empty over existing services, and with `store_write_failed` when the data directory
   * cannot be created.
   */
  async load(): Promise<ServiceSpec[]> {
    await ensureDataDir(this.dataDir);
    const stale = await removeStaleTempFiles(this.path).catch((error: unknown) => {
      throw this.corrupt(`failed to list ${this.dataDir}`, error);
    });
    if (stale.length > 0) {
      this.logger.warn({ files: stale, path: this.path }, 'removed temp files of an interrupted write');
    }

    const file = await this.readFile();
    this.services = new Map(file.services.map((spec) => [spec.name, spec]));
    this.logger.info({ path: this.path, services: this.services.size }, 'loaded services');
    return this.list();
  }

  /** Returns all services, sorted by name. */
  list(): ServiceSpec[] {
    return [...this.loaded().values()].sort((a, b) => a.name.localeCompare(b.name)).map((spec) => structuredClone(spec));
  }

  get(name: string): ServiceSpec | undefined {
    const spec = this.loaded().get(name);
    return spec === undefined ? undefined : structuredClone(spec);
  }

  /** Inserts or replaces the service named `spec.name`. Rejects with `store_write_failed`. */
  async put(spec: ServiceSpec): Promise<void> {
    const copy = structuredClone(spec);
    await this.change((services) => services.set(copy.name, copy));
  }

  /** Removes a service. Resolves to false when it did not exist. Rejects with `store_write_failed`. */
  async remove(name: string): Promise<boolean> {
    let existed = false;
    await this.change((services) => {
      existed = services.delete(name);
    });
    return existed;
  }

  private change(apply: (services: Map<string, ServiceSpec>) => void): Promise<void> {
    this.loaded();
    const run = async (): Promise<void> => {
      const next = new Map(this.loaded());
      apply(next);
      await this.write(next);
      this.services = next;
    };
    const result = this.writeQueue.then(run);
    // The queue continues after a failed write; the caller gets the error through `result`.
    this.writeQueue = result.catch(() => undefined);
    return result;
  }

  private async write(services: Map<string, ServiceSpec>): Promise<void> {
    const file: ServicesFile = {
      version: SERVICES_FILE_VERSION,
      services: [...services.values()].sort((a, b) => a.name.localeCompare(b.name)),
    };
    try {
      await writeFileAtomic(this.path, `${JSON.stringify(file, null, 2)}\n`, FILE_MODE);
    } catch (error) {
      throw new LumaError('store_write_failed', `failed to write ${this.path}: ${describeError(error)}`, {
        cause: error,
        details: { path: this.path },
      });
    }
    this.logger.debug({ path: this.path, services: services.size }, 'wrote services');
  }

  private async readFile(): Promise<ServicesFile> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if (isErrnoException(error, 'ENOENT')) return { version: SERVICES_FILE_VERSION, services: [] };
      throw this.corrupt(`failed to read ${this.path}`, error);
    }

    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw this.corrupt(`${this.path} is not valid JSON`, error);
    }

    const version = (json as { version?: unknown } | null)?.version;
    if (typeof version === 'number' && version > SERVICES_FILE_VERSION) {
      throw this.corrupt(
        `${this.path} has format version ${version}, written by a newer Luma; this one reads version ${SERVICES_FILE_VERSION}`,
        undefined,
        { remedy: 'upgrade Luma, or restore the file from a backup made by this version' },
      );
    }

    const parsed = servicesFileSchema.safeParse(json);
    if (!parsed.success) {
      const issues = parsed.error.issues.slice(0, 5).map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
      throw this.corrupt(`${this.path} has invalid content (${issues.join('; ')})`, parsed.error, { quoteCause: false });
    }

    const names = new Set<string>();
    for (const spec of parsed.data.services) {
      if (names.has(spec.name)) throw this.corrupt(`${this.path} lists the service ${spec.name} twice`, undefined);
      names.add(spec.name);
    }
    return parsed.data;
  }

  private corrupt(problem: string, cause: unknown, options: { remedy?: string; quoteCause?: boolean } = {}): LumaError {
    const fix = options.remedy ?? 'restore the file from a backup, or move it away to start with no services';
    const reason = cause === undefined || options.quoteCause === false ? '' : `: ${describeError(cause)}`;
    return new LumaError('store_corrupt', `${problem}${reason}; ${fix}`, { cause, details: { path: this.path } });
  }

  private loaded(): Map<string, ServiceSpec> {
    if (this.services === undefined) throw new Error('internal error: ServiceStore used before load() resolved');
    return this.services;
  }
}
