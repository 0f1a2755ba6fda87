// Command stream-commp reads a payload on stdin and prints its piece CID to stderr in the four lines of
// go-fil-commp-hashhash's stream-commp. Its command module (…/cmd/stream-commp) is not served by the Go module
// proxy this project can reach, so scripts/install-peers builds this thin main over the same library
// (go-fil-commp-hashhash's commp.Calc, go-fil-commcid for the CID) instead. The CAR header scan of the
// original, which only adds a remark line, is left out.
//
//	stream-commp [-p PADDED_PIECE_SIZE] < FILE
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"

	commcid "github.com/filecoin-project/go-fil-commcid"
	commp "github.com/filecoin-project/go-fil-commp-hashhash"
)

const bufSize = (16 << 20) / 128 * 127

func main() {
	pad := flag.Uint64("p", 0, "optional power-of-two padded piece size to pad to")
	flag.Uint64Var(pad, "pad-piece-size", 0, "optional power-of-two padded piece size to pad to")
	flag.Parse()

	cp := new(commp.Calc)
	n, err := io.Copy(cp, bufio.NewReaderSize(os.Stdin, bufSize))
	if err != nil {
		fail(fmt.Errorf("unexpected error at offset %d: %w", n, err))
	}
	raw, padded, err := cp.Digest()
	if err != nil {
		fail(err)
	}
	if *pad > 0 {
		if raw, err = commp.PadCommP(raw, padded, *pad); err != nil {
			fail(err)
		}
		padded = *pad
	}
	c, err := commcid.DataCommitmentV1ToCID(raw)
	if err != nil {
		fail(err)
	}
	fmt.Fprintf(os.Stderr, "\nCommPCid: %s\nPayload:        % 12d bytes\nUnpadded piece: % 12d bytes\nPadded piece:   % 12d bytes\n",
		c, n, padded/128*127, padded)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
