package sqlnorm

// maxCommand bounds the length of an unknown first keyword.
const maxCommand = 24

// Command returns the statement's first keyword upper-cased (SELECT, INSERT,
// BEGIN, SET, SHOW, CREATE ...), skipping white space, comments and opening
// parentheses; "" when the text does not start with a word. Well-known
// keywords are returned as constants (no allocation).
func Command(sql string) string {
	i := 0
	for i < len(sql) {
		c := sql[i]
		switch {
		case isSpace(c) || c == '(' || c == ';':
			i++
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			i = skipLine(sql, i+2)
		case c == '#':
			i = skipLine(sql, i+1)
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			i = skipBlock(sql, i+2)
		default:
			return word(sql[i:])
		}
	}
	return ""
}

func word(s string) string {
	j := 0
	for j < len(s) && j <= maxCommand && ('a' <= lower(s[j]) && lower(s[j]) <= 'z' || s[j] == '_') {
		j++
	}
	if j == 0 || j > maxCommand {
		return ""
	}
	w := s[:j]
	for _, k := range keywords {
		if equalFold(w, k) {
			return k
		}
	}
	b := make([]byte, j)
	for i := range j {
		c := w[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b[i] = c
	}
	return string(b)
}

var keywords = [...]string{
	"SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN", "COMMIT", "ROLLBACK",
	"START", "SET", "SHOW", "USE", "CREATE", "DROP", "ALTER", "TRUNCATE", "WITH",
	"CALL", "EXPLAIN", "DESCRIBE", "DESC", "GRANT", "REVOKE", "LOCK", "UNLOCK",
	"SAVEPOINT", "RELEASE", "PREPARE", "EXECUTE", "DEALLOCATE", "COPY", "LISTEN",
	"NOTIFY", "VACUUM", "ANALYZE", "DECLARE", "FETCH", "CLOSE", "DISCARD", "RESET",
	"MERGE", "VALUES", "TABLE", "DO", "KILL", "FLUSH", "OPTIMIZE", "LOAD", "HANDLER",
	"CHECKPOINT", "CLUSTER", "COMMENT", "REINDEX", "REFRESH", "ABORT", "END", "XA",
}

// equalFold compares s with the upper-case ASCII upper, ignoring case.
func equalFold(s, upper string) bool {
	if len(s) != len(upper) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != upper[i] {
			return false
		}
	}
	return true
}
