package metrics

import (
	"strconv"
	"sync"
)

// Label caps: the most distinct priorities and tenants a metric exports
// as labels of their own; the others are summed under OtherLabel, so that
// a table with many tenants cannot blow up the number of series.
const (
	MaxPriorityLabels = 20
	MaxTenantLabels   = 50

	// OtherLabel is the label of what is beyond a cap.
	OtherLabel = "other"
	// DefaultTenantLabel is the label of the default tenant (NULL).
	DefaultTenantLabel = "default"
)

// TenantLabel is the label of tenant ("" for the default tenant).
func TenantLabel(tenant string) string {
	if tenant == "" {
		return DefaultTenantLabel
	}
	return tenant
}

// PriorityLabel is the label of priority p.
func PriorityLabel(p int16) string { return strconv.Itoa(int(p)) }

// BoundedLabels hands out label values: the first Max distinct values
// seen keep their own, the later ones become OtherLabel. Safe for
// concurrent use.
type BoundedLabels struct {
	mu   sync.Mutex
	max  int
	seen map[string]bool
}

// NewBoundedLabels returns BoundedLabels of at most max values.
func NewBoundedLabels(maxValues int) *BoundedLabels {
	return &BoundedLabels{max: maxValues, seen: map[string]bool{}}
}

// Value is the label for v.
func (b *BoundedLabels) Value(v string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seen[v] {
		return v
	}
	if len(b.seen) < b.max {
		b.seen[v] = true
		return v
	}
	return OtherLabel
}
