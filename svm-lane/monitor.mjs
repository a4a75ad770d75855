#!/usr/bin/env node
// Asks a running lane VM's QEMU monitor (the unix socket run.sh gives every VM) for each command
// given, and prints the answers: how run.sh shows what a wedged VM's CPUs were doing.
//   node svm-lane/monitor.mjs JOB/monitor.sock 'info cpus' 'info registers -a'
import net from 'node:net';

const [socketPath, ...commands] = process.argv.slice(2);
if (!socketPath) {
  console.error('usage: monitor.mjs SOCKET COMMAND...');
  process.exit(2);
}
const PROMPT = '(qemu) ';
const socket = net.connect(socketPath);
socket.setEncoding('utf8');
let buffer = '';
let answered = -1; // the banner comes first, before any command's answer
socket.on('data', (chunk) => {
  buffer += chunk;
  while (buffer.includes(PROMPT)) {
    const at = buffer.indexOf(PROMPT);
    // The monitor echoes each command with terminal escapes; drop those and the echoed line.
    const text = buffer.slice(0, at).replace(/\x1b\[[0-9;]*[A-Za-z]/g, '').replace(/\r/g, '');
    buffer = buffer.slice(at + PROMPT.length);
    if (answered >= 0) console.log(`--- ${commands[answered]}\n${text.split('\n').slice(1).join('\n').trimEnd()}`);
    answered++;
    if (answered < commands.length) socket.write(`${commands[answered]}\n`);
    else socket.end();
  }
});
socket.on('error', (err) => {
  console.error(`monitor ${socketPath}: ${err.message}`);
  process.exitCode = 1;
});
setTimeout(() => {
  console.error('monitor: no answer in 20 s');
  process.exit(1);
}, 20_000).unref();
