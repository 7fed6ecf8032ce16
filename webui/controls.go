package webui

// Control characters from outside (a log line's carriage return or
// escape, a commit message's bell) are data: in a page they would be
// invisible, and in a Server-Sent Event a carriage return ends a line, so
// a log line could end its event and forge the next. Pages and events
// show them as the Unicode control pictures (U+2400 ␀ to U+241F ␟, U+2421
// ␡ for DEL) instead; tab and newline stay. The markup of Kiln's templates
// holds none of them, and UTF-8 uses no byte below 0x80 inside a
// multi-byte character, so the replacement works on the bytes of a whole
// page.

// hasControls reports whether b holds a byte showControls replaces.
func hasControls(b []byte) bool {
	for _, c := range b {
		if isControl(c) {
			return true
		}
	}
	return false
}

func isControl(c byte) bool { return c < 0x20 && c != '\t' && c != '\n' || c == 0x7f }

// showControls returns b with its control characters, but tab and
// newline, replaced by their pictures.
func showControls(b []byte) []byte {
	if !hasControls(b) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for _, c := range b {
		switch {
		case c == 0x7f:
			out = append(out, "\u2421"...)
		case isControl(c):
			out = append(out, 0xe2, 0x90, 0x80+c) // U+2400 + c
		default:
			out = append(out, c)
		}
	}
	return out
}

// showControlsString is showControls for a string.
func showControlsString(s string) string {
	for i := 0; i < len(s); i++ {
		if isControl(s[i]) {
			return string(showControls([]byte(s)))
		}
	}
	return s
}
