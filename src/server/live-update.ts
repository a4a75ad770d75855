/**
 * Live update the way the VMOD's users do it: a POST of a new ELF to the program's own route with
 * `X-LiveUpdate: KEY`, KEY being the program's `key` in the library. The new program must boot and
 * reach wait_for_requests before it replaces the running one (ProgramSlot.update); on failure the old
 * one keeps serving. A program whose library entry names its own file gets the new ELF written there,
 * so a restart keeps it. The answers are the VMOD's texts, with 201 for success.
 *
 * No `key`, no live update: the POST is refused (403), never passed to the program. A program with
 * storage hands its storage VM's state to the new one's (Program.handStorageTo); when that fails,
 * the update fails and the old program keeps serving.
 */
import { rename, rm, writeFile } from 'node:fs/promises';
import { sameSecret } from './admin.js';
import type { ProgramSlot } from './program-slot.js';

export const LIVE_UPDATE_HEADER = 'x-liveupdate';

export interface LiveUpdateAnswer {
  status: number;
  text: string;
}

export async function liveUpdate(slot: ProgramSlot, key: string, file: Buffer): Promise<LiveUpdateAnswer> {
  const expected = slot.entry.liveUpdateKey;
  if (expected === undefined) return { status: 403, text: `Live update is not enabled for program ${slot.entry.name} (it has no key)` };
  if (!sameSecret(key, expected)) return { status: 403, text: 'Wrong live-update key' };
  if (file.length === 0) return { status: 400, text: 'Empty file received' };
  try {
    await slot.update(file);
  } catch (e) {
    const err = e as { code?: string; message?: string };
    return { status: 422, text: `Program ${slot.entry.name} was not updated: the new one failed to start [${err.code ?? 'error'}]: ${err.message}` };
  }
  if (!slot.entry.ownFile) return { status: 201, text: 'Update successful (not stored)' };
  const path = slot.entry.path;
  try {
    const tmp = `${path}.${process.pid}.tmp`;
    await writeFile(tmp, file, { mode: 0o755 });
    await rename(tmp, path);
    // A download record beside it would revalidate against the origin's old date and fetch the old program back.
    await rm(`${path}.json`, { force: true });
  } catch (e) {
    return { status: 500, text: `Update successful, but could not write '${path}': ${(e as Error).message}` };
  }
  return { status: 201, text: 'Update successful (stored)' };
}
