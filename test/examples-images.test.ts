// The image examples (guest/examples/webp.c, thumbnail.c) answer under tskvm exactly what they print
// natively for the same input and arg — same code, same static libjpeg-turbo, libpng and libwebp —
// for good images, broken ones and things that are not images; webp falls back to the original image
// (with X-Webp-Error) when a conversion fails, from its handler or, for a timeout, from on_error.
// Inputs: guest/examples/inputs/ (made by make-images.c there), cut or generated here for the rest.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import { Program, type ProgramOptions } from '../src/index.js';
import { kvmAvailable, repoRoot, runNative } from './helpers/differential.js';

const examples = join(repoRoot, 'guest', 'examples');
const bin = (name: string): string => join(examples, 'bin', name);
const input = (name: string): Buffer => readFileSync(join(examples, 'inputs', name));
const options: ProgramOptions = { maxMemory: 128, maxRequestMemory: 64, onLog: () => {} };

const photo = input('photo.jpg'); // 640×480 RGB baseline
const gray = input('gray.jpg'); // 200×150 grayscale progressive
const logo = input('logo.png'); // 256×192 RGBA
const truncatedJpeg = photo.subarray(0, 20000);
const truncatedPng = logo.subarray(0, 3000);
const text = Buffer.from('hello, this is not an image\n');

const isWebp = (b: Buffer): boolean => b.length > 12 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP';
const isJpeg = (b: Buffer): boolean => b.length > 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;

/** Width and height of a WebP (VP8 / VP8L / VP8X). */
function webpSize(b: Buffer): [number, number] {
  const chunk = b.toString('latin1', 12, 16);
  if (chunk === 'VP8 ') return [b.readUInt16LE(26) & 0x3fff, b.readUInt16LE(28) & 0x3fff];
  if (chunk === 'VP8L') { const v = b.readUInt32LE(21); return [(v & 0x3fff) + 1, ((v >>> 14) & 0x3fff) + 1]; }
  if (chunk === 'VP8X') return [b.readUIntLE(24, 3) + 1, b.readUIntLE(27, 3) + 1];
  throw new Error(`not a WebP chunk: ${chunk}`);
}

/** Width and height from a JPEG's SOFn. */
function jpegSize(b: Buffer): [number, number] {
  for (let i = 2; i + 9 < b.length;) {
    if (b[i] !== 0xff) throw new Error(`bad JPEG marker at ${i}`);
    const marker = b[i + 1]!;
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) return [b.readUInt16BE(i + 7), b.readUInt16BE(i + 5)];
    i += 2 + b.readUInt16BE(i + 2);
  }
  throw new Error('no SOF in JPEG');
}

/** A deterministic RGB PNG of w×h (smooth, so it compresses well), written here with zlib. */
function makePng(w: number, h: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf: Buffer): number => {
    let c = 0xffffffff;
    for (const byte of buf) c = crcTable[(c ^ byte) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer): Buffer => {
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc(body), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, no interlace
  const raw = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    const row = y * (w * 3 + 1);
    for (let x = 0; x < w; x++) raw.set([(x * 255 / w) | 0, (y * 255 / h) | 0, ((x + y) >> 4) & 0xff], row + 1 + x * 3);
  }
  return Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 6 })), chunk('IEND', Buffer.alloc(0))]);
}

t.test('webp: JPEG and PNG → WebP, the same bytes as natively', async (t) => {
  if (!kvmAvailable(t)) return;
  const webp = await Program.load(bin('webp'), options);
  try {
    const cases: Array<[string, Buffer, string, [number, number]]> = [
      ['photo.jpg', photo, '', [640, 480]],
      ['photo.jpg', photo, 'q=80,w=320', [320, 240]],
      ['photo.jpg', photo, 'q=30,h=100', [133, 100]],
      ['photo.jpg', photo, 'w=64,h=64', [64, 48]],
      ['photo.jpg', photo, 'w=1000', [640, 480]], // never enlarged
      ['gray.jpg', gray, 'q=90', [200, 150]],
      ['gray.jpg', gray, 'w=50', [50, 38]],
      ['logo.png', logo, '', [256, 192]],
      ['logo.png', logo, 'q=60,w=100', [100, 75]],
    ];
    for (const [name, body, arg, size] of cases) {
      const native = runNative(bin('webp'), [arg], { input: body });
      t.equal(native.status, 0, `native ${name} ${arg}`);
      const res = await webp.request({ method: 'POST', url: '/', body, arg });
      t.equal(res.status, 200, `${name} ${arg}: status`);
      t.equal(res.contentType, 'image/webp');
      t.ok(isWebp(res.body), 'RIFF....WEBP');
      t.same(webpSize(res.body), size, `${name} ${arg}: ${size.join('×')}`);
      t.ok(res.body.equals(native.stdout), `${name} ${arg}: the same ${res.body.length} bytes as natively`);
    }
  } finally {
    await webp.close();
  }
});

t.test('webp: a broken image comes back as it was, with X-Webp-Error; non-images and bad args are refused', async (t) => {
  if (!kvmAvailable(t)) return;
  const webp = await Program.load(bin('webp'), options);
  try {
    for (const [name, body, type, reason] of [
      ['truncated JPEG', truncatedJpeg, 'image/jpeg', /^JPEG: Premature end of JPEG file$/],
      ['truncated PNG', truncatedPng, 'image/png', /^PNG: /],
      ['JPEG without its image data', photo.subarray(0, 700), 'image/jpeg', /^JPEG: /],
    ] as const) {
      const native = runNative(bin('webp'), ['w=100'], { input: body });
      const res = await webp.request({ method: 'POST', url: '/', body, arg: 'w=100' });
      t.equal(res.status, 200, `${name}: 200`);
      t.equal(res.contentType, type, `${name}: the original's type`);
      t.match(res.headers['x-webp-error'], reason, `${name}: X-Webp-Error ${res.headers['x-webp-error']}`);
      t.ok(res.body.equals(body), `${name}: the original bytes`);
      t.equal(res.error, undefined, 'answered by the handler, not a failure');
      t.equal(native.status, 2, `${name}: native falls back with status 2`);
      t.ok(native.stdout.equals(body), `${name}: native prints the original`);
      t.equal(native.stderr.toString(), `webp: ${res.headers['x-webp-error']}\n`, `${name}: the same reason natively`);
    }
    for (const [name, body, arg, status] of [
      ['text', text, '', 415],
      ['GIF', Buffer.from('GIF89a\x01\x00\x01\x00', 'latin1'), '', 415],
      ['bad arg', photo, 'q=101', 400],
      ['unknown option', photo, 'z=1', 400],
      ['no body', Buffer.alloc(0), '', 400],
    ] as const) {
      const native = runNative(bin('webp'), [arg], { input: body });
      const res = await webp.request({ method: body.length ? 'POST' : 'GET', url: '/', body: body.length ? body : undefined, arg });
      t.equal(res.status, status, `${name}: ${status}`);
      t.equal(res.contentType, 'text/plain');
      t.equal(native.status, 1, `${name}: native status 1`);
      t.equal(native.stdout.length, 0);
      t.equal(res.body.toString(), native.stderr.toString(), `${name}: ${JSON.stringify(res.body.toString())}`);
    }
    // The fork is clean after the failures.
    const again = await webp.request({ method: 'POST', url: '/', body: photo, arg: 'w=320' });
    t.ok(again.body.equals(runNative(bin('webp'), ['w=320'], { input: photo }).stdout), 'a good image after the broken ones');
  } finally {
    await webp.close();
  }
});

t.test('webp: a persistent VM reuses its decoder across good and broken images', async (t) => {
  if (!kvmAvailable(t)) return;
  const webp = await Program.load(bin('webp'), { ...options, ephemeral: false, concurrency: 1 });
  try {
    for (const [i, body] of [photo, truncatedJpeg, gray, truncatedPng, photo, logo, photo.subarray(0, 700), photo].entries()) {
      const res = await webp.request({ method: 'POST', url: '/', body, arg: 'q=70,w=200' });
      t.ok(res.body.equals(runNative(bin('webp'), ['q=70,w=200'], { input: body }).stdout), `request ${i + 1}: as natively`);
    }
  } finally {
    await webp.close();
  }
});

t.test('webp: on_error answers the original when the conversion runs out of time; out of memory falls back too', async (t) => {
  if (!kvmAvailable(t)) return;
  const big = makePng(2400, 1800); // 1 MB of PNG, 13 MB of pixels: ~200 ms of decoding and encoding natively
  const slow = await Program.load(bin('webp'), { ...options, maxRequestMemory: 96, maxRequestTime: 0.05 });
  try {
    const res = await slow.request({ method: 'POST', url: '/', body: big });
    t.equal(res.error?.code, 'TSKVM_ERR_GUEST_TIMEOUT', 'the request timed out');
    t.equal(res.status, 200, 'on_error answered');
    t.equal(res.contentType, 'image/png');
    t.match(res.headers['x-webp-error'], /^timeout: /, `X-Webp-Error: ${res.headers['x-webp-error']}`);
    t.ok(res.body.equals(big), 'the original bytes');
    const next = await slow.request({ method: 'POST', url: '/', body: text }); // quick: the timeout is short
    t.same([next.status, next.body.toString()], [415, 'webp: not a JPEG or PNG image\n'], 'the program answers the next request');
  } finally {
    await slow.close();
  }
  // The pixels must outgrow the heap webp reserves before the freeze (16 MiB, heap.h: it is the
  // program's, not the request's) plus the 4 MiB a request may add: 4000×3000 RGB is 36 MB.
  const huge = makePng(4000, 3000);
  const small = await Program.load(bin('webp'), { ...options, maxRequestMemory: 4 });
  try {
    const res = await small.request({ method: 'POST', url: '/', body: huge });
    t.equal(res.status, 200);
    t.equal(res.error, undefined, 'the handler noticed (malloc returned NULL)');
    t.match(res.headers['x-webp-error'], /out of memory/, `X-Webp-Error: ${res.headers['x-webp-error']}`);
    t.ok(res.body.equals(huge), 'the original bytes');
    const converted = await small.request({ method: 'POST', url: '/', body: photo, arg: 'w=320' });
    t.ok(converted.body.equals(runNative(bin('webp'), ['w=320'], { input: photo }).stdout), 'a small image still converts');
  } finally {
    await small.close();
  }
});

t.test('thumbnail: JPEG → small JPEG, the same bytes as natively', async (t) => {
  if (!kvmAvailable(t)) return;
  const thumbnail = await Program.load(bin('thumbnail'), options);
  try {
    const cases: Array<[string, Buffer, string, [number, number]]> = [
      ['photo.jpg', photo, '', [128, 96]],
      ['photo.jpg', photo, '64', [64, 48]],
      ['photo.jpg', photo, 'max=300,q=90', [300, 225]],
      ['photo.jpg', photo, 'max=80', [80, 60]], // exactly 1/8 in the DCT
      ['photo.jpg', photo, '1000', [640, 480]], // fits already: re-encoded only
      ['photo.jpg', photo, '1', [1, 1]],
      ['gray.jpg', gray, '', [128, 96]],
      ['gray.jpg', gray, 'q=50,max=50', [50, 38]],
    ];
    for (const [name, body, arg, size] of cases) {
      const native = runNative(bin('thumbnail'), [arg], { input: body });
      t.equal(native.status, 0, `native ${name} ${arg}`);
      const res = await thumbnail.request({ method: 'POST', url: '/', body, arg });
      t.equal(res.status, 200, `${name} ${arg}: status`);
      t.equal(res.contentType, 'image/jpeg');
      t.ok(isJpeg(res.body), 'FF D8 FF');
      t.same(jpegSize(res.body), size, `${name} ${arg}: ${size.join('×')}`);
      t.ok(res.body.equals(native.stdout), `${name} ${arg}: the same ${res.body.length} bytes as natively`);
    }
    for (const [name, body, arg, status] of [
      ['truncated JPEG', truncatedJpeg, '', 422],
      ['JPEG without its image data', photo.subarray(0, 700), '', 422],
      ['PNG', logo, '', 415],
      ['text', text, '', 415],
      ['bad arg', photo, 'max=0', 400],
      ['no body', Buffer.alloc(0), '', 400],
    ] as const) {
      const native = runNative(bin('thumbnail'), [arg], { input: body });
      const res = await thumbnail.request({ method: body.length ? 'POST' : 'GET', url: '/', body: body.length ? body : undefined, arg });
      t.equal(res.status, status, `${name}: ${status}`);
      t.equal(res.contentType, 'text/plain');
      t.equal(native.status, 1, `${name}: native status 1`);
      t.equal(res.body.toString(), native.stderr.toString(), `${name}: ${JSON.stringify(res.body.toString())}`);
    }
  } finally {
    await thumbnail.close();
  }
});
