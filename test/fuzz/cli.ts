// npm run fuzz -- [--seconds N] [--seed S] [--calls C] [--replay REQUEST_SEED]: see syscalls.ts.
import { main } from './syscalls.js';

process.exitCode = main(process.argv.slice(2));
