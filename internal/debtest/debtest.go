// Package debtest writes a small Debian source package for the tests of
// Kiln's Debian steps, archive and the Ideascube master: kiln-hello, a
// C program with a man page, so that the architecture it is built for
// shows in its ELF header and in what it prints. Variants break it in the
// ways the tests need: a debian/rules that fails, a lintian error.
package debtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Package is the name of the source and binary package.
const Package = "kiln-hello"

// Greeting is what the installed program prints, before the width of a
// pointer ("kiln-hello says hello from 64-bit").
const Greeting = "kiln-hello says hello from"

// Source says which kiln-hello to write.
type Source struct {
	// Version is the Debian version in debian/changelog ("1.0" if empty).
	Version string
	// Distribution is the changelog's distribution ("bookworm" if empty).
	Distribution string
	// FailingRules makes debian/rules fail in the build stage, after
	// printing "compiling the broken part".
	FailingRules bool
	// LintianError leaves out debian/copyright, which lintian reports as
	// the error no-copyright-file.
	LintianError bool
	// LintianWarning leaves out the man page, which lintian reports as the
	// warning no-manual-page.
	LintianWarning bool
	// LintianPedantic leaves out Rules-Requires-Root, which lintian
	// reports, with --pedantic only, as the pedantic tag
	// silent-on-rules-requiring-root of the source package.
	LintianPedantic bool
	// LintianExperimental installs a file twice under /usr/share/doc,
	// which lintian reports, with --pedantic and -E only, as the
	// experimental tag duplicate-files of the binary package.
	LintianExperimental bool
	// Section is the package's section ("misc" if empty): "contrib/misc"
	// puts it in an archive's contrib component.
	Section string
}

// Write writes the source tree into dir (created if needed).
func Write(dir string, s Source) error {
	if s.Version == "" {
		s.Version = "1.0"
	}
	if s.Distribution == "" {
		s.Distribution = "bookworm"
	}
	if s.Section == "" {
		s.Section = "misc"
	}
	rrr := "Rules-Requires-Root: no\n"
	if s.LintianPedantic {
		rrr = ""
	}
	files := map[string]string{
		"hello.c": `#include <stdio.h>

int main(void)
{
	printf("` + Greeting + ` %d-bit\n", (int)(sizeof(void *) * 8));
	return 0;
}
`,
		"kiln-hello.1": `.TH KILN-HELLO 1
.SH NAME
kiln-hello \- print a greeting
.SH SYNOPSIS
.B kiln-hello
.SH DESCRIPTION
.B kiln-hello
prints a greeting and the width of a pointer, in bits.
`,
		"Makefile": "CC ?= cc\n" +
			"all: kiln-hello\n" +
			"kiln-hello: hello.c\n" +
			"\t$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ hello.c\n" +
			"install:\n" +
			"\tinstall -D -m 755 kiln-hello $(DESTDIR)/usr/bin/kiln-hello\n" +
			manInstall(s) +
			notesInstall(s) +
			"clean:\n" +
			"\trm -f kiln-hello\n",
		"debian/source/format": "3.0 (native)\n",
		"debian/control": `Source: kiln-hello
Section: ` + s.Section + `
Priority: optional
Maintainer: Kiln Tests <kiln-tests@example.org>
Build-Depends: debhelper-compat (= 13)
Standards-Version: 4.6.2
` + rrr + `
Package: kiln-hello
Architecture: any
Depends: ${shlibs:Depends}, ${misc:Depends}
Description: greeting program built by Kiln's tests
 A tiny C program with a man page, built as a Debian package by the
 tests of Kiln's Debian steps.
`,
		"debian/changelog": fmt.Sprintf(`kiln-hello (%s) %s; urgency=medium

  * Release %s.

 -- Kiln Tests <kiln-tests@example.org>  Wed, 02 Dec 2026 10:00:00 +0000
`, s.Version, s.Distribution, s.Version),
		"debian/rules": "#!/usr/bin/make -f\n" +
			"%:\n" +
			"\tdh $@\n" +
			"override_dh_auto_install:\n" +
			"\t$(MAKE) install DESTDIR=$(CURDIR)/debian/kiln-hello\n" +
			failingRules(s),
	}
	if s.LintianExperimental {
		files["NOTES"] = "kiln-hello has nothing more to say.\n"
	}
	if !s.LintianError {
		files["debian/copyright"] = `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: kiln-hello

Files: *
Copyright: 2026 Kiln Tests
License: Expat
 Permission is hereby granted, free of charge, to any person obtaining a
 copy of this software, to deal in it without restriction.
`
	}
	for name, text := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if name == "debian/rules" {
			mode = 0o755
		}
		if err := os.WriteFile(path, []byte(text), mode); err != nil {
			return err
		}
		if err := os.Chmod(path, mode); err != nil {
			return err
		}
	}
	return nil
}

func manInstall(s Source) string {
	if s.LintianWarning {
		return ""
	}
	return "\tinstall -D -m 644 kiln-hello.1 $(DESTDIR)/usr/share/man/man1/kiln-hello.1\n"
}

func notesInstall(s Source) string {
	if !s.LintianExperimental {
		return ""
	}
	return "\tinstall -D -m 644 NOTES $(DESTDIR)/usr/share/doc/kiln-hello/NOTES\n" +
		"\tinstall -D -m 644 NOTES $(DESTDIR)/usr/share/doc/kiln-hello/NOTES.copy\n"
}

func failingRules(s Source) string {
	if !s.FailingRules {
		return ""
	}
	return strings.Join([]string{
		"override_dh_auto_build:",
		"\techo \"compiling the broken part\"",
		"\tfalse",
	}, "\n") + "\n"
}
