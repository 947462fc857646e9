/**
 * The requests still open, for the exit flush (abandonOpen): an intrusive doubly linked list
 * through two symbol-keyed fields on the tracked object itself, so adding and removing one
 * costs a few property writes, no hashing and no allocation.
 */
const kPrev = Symbol('datalab.otel.openPrev');
const kNext = Symbol('datalab.otel.openNext');

interface Linked {
  // undefined: not in the list; null: the end of the list.
  [kPrev]?: Linked | null;
  [kNext]?: Linked | null;
}

export class OpenList<T extends object> {
  private head: Linked | null = null;

  add(item: T): void {
    const node = item as Linked;
    node[kPrev] = null;
    node[kNext] = this.head;
    if (this.head !== null) this.head[kPrev] = node;
    this.head = node;
  }

  delete(item: T): void {
    const node = item as Linked;
    const prev = node[kPrev];
    if (prev === undefined) return;
    const next = node[kNext] ?? null;
    if (prev === null) this.head = next;
    else prev[kNext] = next;
    if (next !== null) next[kPrev] = prev;
    node[kPrev] = undefined;
    node[kNext] = undefined;
  }

  /** A copy, so that the caller may delete while it iterates. */
  toArray(): T[] {
    const out: T[] = [];
    for (let node = this.head; node !== null; node = node[kNext] ?? null) out.push(node as T);
    return out;
  }
}
