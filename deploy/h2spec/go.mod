// h2spec, the HTTP/2 conformance suite the ingress is tested with (tests/support/h2spec.py
// builds it once into $KANAL_CACHE_DIR). Its last release, 2.2.1, predates Go modules, so the
// versions of what it imports are pinned here, each old enough for Go 1.19 (Debian 12's).
module kanal.test/h2spec

go 1.19

require github.com/summerwind/h2spec v2.2.1+incompatible

require (
	github.com/fatih/color v1.17.0 // indirect
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/mattn/go-colorable v0.1.13 // indirect
	github.com/mattn/go-isatty v0.0.20 // indirect
	github.com/spf13/cobra v1.8.1 // indirect
	github.com/spf13/pflag v1.0.5 // indirect
	golang.org/x/net v0.33.0 // indirect
	golang.org/x/sys v0.28.0 // indirect
	golang.org/x/text v0.21.0 // indirect
)
