package broadcast

// Listed returns how many clients the shards list for the topic named
// name. Call it only once h is closed: the lists are the shards' own.
func Listed(h *Hub, name string) int {
	n := 0
	for _, s := range h.shards {
		for t, cls := range s.subs {
			if t.name == name {
				n += len(cls)
			}
		}
	}
	return n
}
