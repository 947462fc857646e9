/**
 * A test-only seam: DATALAB_INTERNAL_FAULTS=<point>,… makes the distro's own hooks throw at those
 * points, so tests can prove that a bug in the distro stays inside it (the request is served, the
 * error is reported once). Unset in production, where the check is one Set-size comparison.
 */
export type FaultPoint =
  | 'http-metrics-start'
  | 'http-metrics-finish'
  | 'inbound-context'
  | 'http2-stream'
  | 'exit-flush';

let active: ReadonlySet<string> = new Set();

export function setFaults(points: readonly string[]): void {
  active = new Set(points);
}

export function injectFault(point: FaultPoint): void {
  if (active.size !== 0 && active.has(point)) throw new Error(`injected fault at ${point}`);
}
