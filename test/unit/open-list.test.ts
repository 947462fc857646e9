import assert from 'node:assert/strict';
import { OpenList } from '../../src/metrics/open-list';

describe('the list of open requests', () => {
  it('adds, removes from the head, middle and tail, ignores what is not in it', () => {
    const list = new OpenList<{ n: number }>();
    const [a, b, c, d] = [1, 2, 3, 4].map((n) => ({ n })) as [
      { n: number },
      { n: number },
      { n: number },
      { n: number },
    ];
    for (const item of [a, b, c, d]) list.add(item);
    assert.deepEqual(
      list.toArray().map((i) => i.n),
      [4, 3, 2, 1],
    );
    list.delete(c);
    list.delete(c);
    list.delete({ n: 9 });
    assert.deepEqual(
      list.toArray().map((i) => i.n),
      [4, 2, 1],
    );
    list.delete(d);
    list.delete(a);
    assert.deepEqual(
      list.toArray().map((i) => i.n),
      [2],
    );
    list.delete(b);
    assert.deepEqual(list.toArray(), []);
    list.add(a);
    assert.deepEqual(list.toArray(), [a]);
  });

  it('items may be removed while the copy is walked', () => {
    const list = new OpenList<object>();
    const items = [{}, {}, {}];
    for (const item of items) list.add(item);
    for (const item of list.toArray()) list.delete(item);
    assert.deepEqual(list.toArray(), []);
  });
});
