/**
 * What a request's failure is, for the client and the statistics: a run that ended in anything but a
 * response (a fault, a timeout, an exit, a broken rule of the guest API) as an error code, the status
 * a server answers with when on_error did not answer, and a message a person can act on.
 */
import type { ErrorCode } from '../errors.js';
import type { RunResult } from '../hypervisor/run-loop.js';
import { SIG } from '../syscalls/signal-state.js';

/** How a request went wrong; `status` is what a server answers when on_error did not. */
export interface RequestFailure {
  code: ErrorCode;
  message: string;
  status: number;
}

function signalName(sig: number): string {
  return Object.entries(SIG).find(([, n]) => n === sig)?.[0] ?? `signal ${sig}`;
}


/** What a run that did not end in a response means for the request. */
export function describeFailure(run: RunResult, outOfMemory: boolean): RequestFailure {
  if (run.outcome === 'pause') {
    const pause = run.pause!;
    if (pause.kind === 'failed') {
      return { code: 'TSKVM_ERR_BAD_RESPONSE', status: 500, message: pause.reason };
    }
    return { code: 'TSKVM_ERR_NO_RESPONSE', status: 500, message: 'the program finished the request without a response (sys_backend_response was not called)' };
  }
  if (run.outcome === 'timeout') return { code: 'TSKVM_ERR_GUEST_TIMEOUT', status: 504, message: run.message ?? 'timeout' };
  if (outOfMemory) {
    return { code: 'TSKVM_ERR_REQUEST_MEMORY', status: 500, message: `out of request memory (max_request_memory): ${run.message ?? `the program ended with status ${run.status}`}` };
  }
  if (run.outcome === 'fault') return { code: 'TSKVM_ERR_GUEST_FAULT', status: 500, message: run.message ?? 'guest fault' };
  if (run.outcome === 'signal') {
    return { code: 'TSKVM_ERR_GUEST_FAULT', status: 500, message: run.message ?? `the program was killed by signal ${run.signal} (${signalName(run.signal!)})` };
  }
  return { code: 'TSKVM_ERR_GUEST_EXIT', status: 500, message: run.message ?? `the program exited with status ${run.status} during a request` };
}
