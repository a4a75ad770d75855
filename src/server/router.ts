/**
 * Which program a request is for, and its `arg`. In order:
 *
 *   1. the Host header, when the library maps that host (any path);
 *   2. the longest `routes` prefix that matches the path on a segment boundary
 *      ("/api" matches "/api", "/api/x" and "/api?q", not "/apix");
 *   3. the first path segment: /<program>/<rest>.
 *
 * The guest always sees the request's whole URL, unchanged. `arg` is the value of the program's
 * `arg_query` parameter when the library names one and the URL has it, else the route's `arg`.
 */
import type { Library, LibraryTarget } from './library.js';

export interface Route {
  program: string;
  arg: string;
}

export class Router {
  private readonly library: Library;

  constructor(library: Library) {
    this.library = library;
  }

  resolve(url: string, host: string | undefined): Route | null {
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const target = this.byHost(host) ?? this.byPrefix(path) ?? this.bySegment(path);
    if (!target) return null;
    const argQuery = this.library.programs.get(target.program)?.argQuery;
    const fromQuery = argQuery && q >= 0 ? new URLSearchParams(url.slice(q + 1)).get(argQuery) : null;
    return { program: target.program, arg: fromQuery ?? target.arg ?? '' };
  }

  private byHost(host: string | undefined): LibraryTarget | undefined {
    if (!host || this.library.hosts.size === 0) return undefined;
    // "name:port" or "[v6]:port"
    const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d*$/, '');
    return this.library.hosts.get(name.toLowerCase());
  }

  private byPrefix(path: string): LibraryTarget | undefined {
    return this.library.routes.find(({ prefix }) => prefix === '/' || path === prefix || path.startsWith(prefix + '/'));
  }

  private bySegment(path: string): LibraryTarget | undefined {
    const name = path.split('/')[1];
    return name && this.library.programs.has(name) ? { program: name } : undefined;
  }
}
