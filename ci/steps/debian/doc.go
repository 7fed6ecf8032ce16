// Package debian has the steps that build, check and publish Debian
// packages, with Debian's own tools, and the APT archive a master keeps
// for what its builds publish.
//
// The steps run on a worker, as every step: Sbuild builds a package in a
// clean chroot (schroot chroots, or unshare mode with a chroot tarball,
// native or cross-built with HostArch), Lintian checks what was built,
// Dput uploads it, SbuildUpdate refreshes a schroot chroot, and
// CheckVersion refuses a version that is not a Debian version before
// anything runs. Each reads its tool's output, so that a step's summary
// says what a person needs to act on (the package and version built, the
// stage that failed and its last lines, the lintian tags), never only an
// exit code.
//
// On the master, Archive is an APT repository kept with reprepro, signed
// with a key given as a secret and served by the master's web server;
// Publish takes the uploads of a build into it.
//
// Fields that say "or a ci.Renderable" take ci.Interpolate, ci.Prop or
// ci.RenderFunc values, computed when the build runs. An on/off field
// (Source, Pedantic, Force, Sudo...) renders to a bool or to a string
// such as "yes" or "false"; any other value fails the step, naming the
// field, before anything runs. The durations, Timeout and MaxTime, are
// fixed in the configuration, as for every step of Kiln. Commands are
// sent as argument vectors: no shell sees a branch, a tag or a version.
//
// # Properties
//
// Sbuild sets deb-package, deb-version and deb-status, and when the build
// succeeds deb-changes (the .changes, relative to the builder's folder)
// and deb-files (the .deb files), as Buildbot's Debian steps set
// deb-changes. Lintian and Dput take deb-changes unless told otherwise;
// Publish takes its base name. Publish sets deb-published.
//
// # The archive
//
// An Archive is listed in the master's Services, which prepares it when
// the master starts, and mounted on the web server, which serves its
// dists/, pool/ and public key. An upload reaches the archive's
// IncomingFolder either with dput (method local when the worker runs on
// the master's machine, scp or rsync otherwise: the way Ideascube's
// workers upload) or with steps.DirectoryUpload over the worker's own
// connection; Publish then includes it with reprepro and says what it
// published in its summary and in the build property PropPublished. A
// version is published once: a second upload of it fails and leaves the
// archive as it was. The signing key comes from a master secret and shows
// nowhere: not in logs, errors or pages.
package debian
