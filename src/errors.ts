/**
 * Every failure tskvm reports is a TskvmError with a stable `code`
 * (`TSKVM_ERR_…`) that programs can match on, and a message a person can act on.
 * `details` carries structured context (guest address, ioctl name, register dump…).
 */
export class TskvmError extends Error {
  readonly code: string;
  readonly details: Record<string, unknown>;

  constructor(code: string, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'TskvmError';
    this.code = code;
    this.details = details;
  }
}
