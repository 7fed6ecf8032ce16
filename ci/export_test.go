package ci

// PendingCounts returns, by builder name, the requests of the pending
// list as counted in the builder's state and as found in the list: the
// two must agree.
func PendingCounts(m *Master) (counted, listed map[string]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	counted, listed = map[string]int{}, map[string]int{}
	for _, b := range m.builderList {
		if b.pending != 0 {
			counted[b.cfg.Name] = b.pending
		}
	}
	for _, p := range m.pending {
		listed[p.builder.cfg.Name]++
	}
	return counted, listed
}
