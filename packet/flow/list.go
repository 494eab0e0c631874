package flow

// Timeout classes: each has its own idle timeout and its own list, ordered
// by last packet (head newest), so expiry walks only expired flows.
const (
	clsHandshake = iota
	clsEstab
	clsHalfClose
	clsClosed
	clsUDP
	numClasses
	noClass = 0xff
)

// list is an intrusive doubly linked list of slab indices.
type list struct{ head, tail int32 }

// touch moves flow idx to the head of class cls's list.
func (t *Table) touch(idx int32, cls uint8) {
	f := &t.flows[idx]
	if f.cls == cls && t.lists[cls].head == idx {
		return
	}
	t.unlink(idx)
	l := &t.lists[cls]
	f.cls, f.prev, f.next = cls, -1, l.head
	if l.head >= 0 {
		t.flows[l.head].prev = idx
	}
	l.head = idx
	if l.tail < 0 {
		l.tail = idx
	}
}

func (t *Table) unlink(idx int32) {
	f := &t.flows[idx]
	if f.cls == noClass {
		return
	}
	l := &t.lists[f.cls]
	if f.prev >= 0 {
		t.flows[f.prev].next = f.next
	} else {
		l.head = f.next
	}
	if f.next >= 0 {
		t.flows[f.next].prev = f.prev
	} else {
		l.tail = f.prev
	}
	f.cls, f.prev, f.next = noClass, -1, -1
}

// release removes flow idx from the table and frees its slot.
func (t *Table) release(idx int32) {
	t.unlink(idx)
	f := &t.flows[idx]
	delete(t.index, f.key)
	*f = flow{cls: noClass, prev: -1, next: t.free}
	t.free = idx
	t.stats.FlowsClosed++
}

// evictOldest removes the least recently seen flow of all classes.
func (t *Table) evictOldest(now int64) {
	best := int32(-1)
	for c := range t.lists {
		i := t.lists[c].tail
		if i >= 0 && (best < 0 || t.flows[i].last < t.flows[best].last) {
			best = i
		}
	}
	if best < 0 {
		return
	}
	t.stats.FlowsEvicted++
	f := &t.flows[best]
	t.finish(best, f.flushCloseType(), now)
}
