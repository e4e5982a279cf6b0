"""Domain-free machinery: errors, ids, clocks, cursors, routing."""
