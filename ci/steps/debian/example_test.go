package debian_test

import (
	"fmt"

	"github.com/kilnci/kiln/ci"
	"github.com/kilnci/kiln/ci/steps"
	"github.com/kilnci/kiln/ci/steps/debian"
)

// A builder that builds a Debian package from the tag it is given, for
// the architecture of its property arch, in sbuild's schroot chroots as
// Ideascube's workers have them; checks it with lintian and uploads it
// with dput.
func ExampleSbuild() {
	halt := ci.StepOptions{HaltOnFailure: true}
	builder := ci.BuilderConfig{
		Name:       "build-armhf-pkg",
		Workers:    []string{"worker-armhf"},
		Properties: map[string]any{"arch": "armhf"},
		Steps: []ci.Step{
			&debian.CheckVersion{StepOptions: halt, Version: ci.Interpolate("%(src::branch)s"), What: "tag"},
			&steps.Git{RepoURL: "https://github.com/ideascube/ideascube.git", Branch: ci.Interpolate("%(src::branch)s")},
			&debian.SbuildUpdate{StepOptions: halt, Chroot: ci.Interpolate("jessie-%(prop:arch)s-sbuild"), Sudo: true},
			&debian.Sbuild{
				StepOptions:       halt,
				Distribution:      "jessie",
				Arch:              ci.Interpolate("%(prop:arch)s"),
				Chroot:            ci.Interpolate("jessie-%(prop:arch)s-sbuild"),
				BuildDepResolver:  "aptitude",
				ExtraRepositories: []any{"deb http://archive.debian.org/debian jessie-backports main"},
				CleanSource:       false,
			},
			&debian.Lintian{StepOptions: halt, SuppressTags: []string{"no-manual-page"}},
			&debian.Dput{StepOptions: halt, Host: ci.Interpolate("%(prop:dput_method)s")},
		},
	}
	fmt.Println(len(builder.Steps), "steps")
	// Output: 6 steps
}

// A cross build of armhf packages on an amd64 worker, in sbuild's unshare
// mode from a chroot tarball that mmdebstrap made: no root, no schroot.
func ExampleSbuild_cross() {
	build := &debian.Sbuild{
		Distribution: "bookworm",
		BuildArch:    "amd64",
		HostArch:     "armhf",
		ChrootMode:   debian.ModeUnshare,
		Chroot:       "/var/cache/kiln/bookworm-amd64.tar.zst",
		BuildDir:     "out",
	}
	fmt.Println(build.Options().Name, build.Validate())
	// Output: sbuild <nil>
}

// Lintian fails the step on errors and warnings alike, but not on one
// tag the project accepts.
func ExampleLintian() {
	check := &debian.Lintian{
		SuppressTags: []string{"no-manual-page"},
		FailOn:       []string{"error", "warning"},
		WarnOn:       []string{"info"},
		Info:         true,
	}
	fmt.Println(check.Validate())
	// Output: <nil>
}

// Dput uploads what Sbuild built (the deb-changes property) to a host of
// dput's configuration.
func ExampleDput() {
	upload := &debian.Dput{Host: "local", Config: "/srv/buildbot/dput.cf"}
	fmt.Println(upload.Options().Name, upload.Validate())
	// Output: dput <nil>
}

func ExampleValidVersion() {
	for _, v := range []string{"0.9.1", "2:1.0-1~bpo12+1", "v9;rm"} {
		fmt.Printf("%q: %v\n", v, debian.ValidVersion(v))
	}
	// Output:
	// "0.9.1": <nil>
	// "2:1.0-1~bpo12+1": <nil>
	// "v9;rm": the upstream version "v9;rm" must start with a digit
}
