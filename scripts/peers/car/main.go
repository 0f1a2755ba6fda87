// Command car is a thin command line over go-car v2 and go-unixfsnode, the libraries ipld/go-car's own
// `car` tool is made of. go-car's command module (github.com/ipld/go-car/cmd) is not served by the Go module
// proxy this project can reach, so scripts/install-peers builds this instead: `create` makes the same library
// calls in the same order as go-car's `car create` (builder.BuildUnixFSRecursive into a ReadWrite blockstore,
// a placeholder root patched by ReplaceRootsInFile), `verify` checks what go-car's `car verify` checks plus
// every block's hash, and `extract` writes a UnixFS DAG back to files as go-car's `car extract` does.
//
//	car create --version 1|2 [--no-wrap] -f OUT.car PATH...
//	car verify FILE.car
//	car extract -f FILE.car [OUTDIR]
//	car root FILE.car
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	blocks "github.com/ipfs/go-block-format"
	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-unixfsnode"
	"github.com/ipfs/go-unixfsnode/data"
	"github.com/ipfs/go-unixfsnode/data/builder"
	"github.com/ipfs/go-unixfsnode/file"
	car "github.com/ipld/go-car/v2"
	"github.com/ipld/go-car/v2/blockstore"
	carstorage "github.com/ipld/go-car/v2/storage"
	dagpb "github.com/ipld/go-codec-dagpb"
	"github.com/ipld/go-ipld-prime"
	cidlink "github.com/ipld/go-ipld-prime/linking/cid"
	"github.com/ipld/go-ipld-prime/node/basicnode"
	"github.com/multiformats/go-multicodec"
	"github.com/multiformats/go-multihash"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: car create|verify|extract|root ..."))
	}
	var err error
	switch os.Args[1] {
	case "create", "c":
		err = cmdCreate(os.Args[2:])
	case "verify":
		err = cmdVerify(os.Args[2:])
	case "extract", "x":
		err = cmdExtract(os.Args[2:])
	case "root":
		err = cmdRoot(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func cmdCreate(args []string) error {
	fs := flag.NewFlagSet("create", flag.ContinueOnError)
	out := fs.String("f", "", "the CAR file to write")
	fs.StringVar(out, "file", "", "the CAR file to write")
	fs.StringVar(out, "o", "", "the CAR file to write")
	noWrap := fs.Bool("no-wrap", false, "do not wrap the files in a directory")
	version := fs.Int("version", 2, "CAR version 1 or 2")
	if err := fs.Parse(args); err != nil {
		return err
	}
	paths := fs.Args()
	if len(paths) == 0 {
		return errors.New("a source location to build the car from must be specified")
	}
	if *out == "" {
		return errors.New("a file destination must be specified")
	}
	if *noWrap && len(paths) > 1 {
		return errors.New("no-wrap cannot be set with multiple source locations")
	}
	hash, err := multihash.Sum([]byte{}, multihash.SHA2_256, -1)
	if err != nil {
		return err
	}
	placeholder := cid.NewCidV1(uint64(multicodec.DagPb), hash)
	var options []car.Option
	switch *version {
	case 1:
		options = append(options, blockstore.WriteAsCarV1(true))
	case 2:
	default:
		return fmt.Errorf("invalid CAR version %d", *version)
	}
	dest, err := blockstore.OpenReadWrite(*out, []cid.Cid{placeholder}, options...)
	if err != nil {
		return err
	}
	root, err := writeFiles(context.Background(), *noWrap, dest, paths...)
	if err != nil {
		return err
	}
	if err := dest.Finalize(); err != nil {
		return err
	}
	return car.ReplaceRootsInFile(*out, []cid.Cid{root})
}

func writeFiles(ctx context.Context, noWrap bool, bs *blockstore.ReadWrite, paths ...string) (cid.Cid, error) {
	ls := cidlink.DefaultLinkSystem()
	ls.TrustedStorage = true
	ls.StorageReadOpener = func(_ ipld.LinkContext, l ipld.Link) (io.Reader, error) {
		blk, err := bs.Get(ctx, l.(cidlink.Link).Cid)
		if err != nil {
			return nil, err
		}
		return bytes.NewReader(blk.RawData()), nil
	}
	ls.StorageWriteOpener = func(_ ipld.LinkContext) (io.Writer, ipld.BlockWriteCommitter, error) {
		buf := bytes.NewBuffer(nil)
		return buf, func(l ipld.Link) error {
			blk, err := blocks.NewBlockWithCid(buf.Bytes(), l.(cidlink.Link).Cid)
			if err != nil {
				return err
			}
			return bs.Put(ctx, blk)
		}, nil
	}
	top := make([]dagpb.PBLink, 0, len(paths))
	for _, p := range paths {
		l, size, err := builder.BuildUnixFSRecursive(p, &ls)
		if err != nil {
			return cid.Undef, err
		}
		if noWrap {
			return l.(cidlink.Link).Cid, nil
		}
		entry, err := builder.BuildUnixFSDirectoryEntry(path.Base(p), int64(size), l)
		if err != nil {
			return cid.Undef, err
		}
		top = append(top, entry)
	}
	root, _, err := builder.BuildUnixFSDirectory(top, &ls)
	if err != nil {
		return cid.Undef, err
	}
	return root.(cidlink.Link).Cid, nil
}

func cmdRoot(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: car root FILE")
	}
	rx, err := car.OpenReader(args[0])
	if err != nil {
		return err
	}
	defer rx.Close()
	roots, err := rx.Roots()
	if err != nil {
		return err
	}
	for _, r := range roots {
		fmt.Println(r)
	}
	return nil
}

// cmdVerify: go-car's VerifyCar (roots present, CARv2 header sane) with the block hashes checked too.
func cmdVerify(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: car verify FILE")
	}
	rx, err := car.OpenReader(args[0])
	if err != nil {
		return err
	}
	defer rx.Close()
	roots, err := rx.Roots()
	if err != nil {
		return err
	}
	if len(roots) == 0 {
		return errors.New("no roots listed in car header")
	}
	missing := map[cid.Cid]struct{}{}
	for _, r := range roots {
		missing[r] = struct{}{}
	}
	fd, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer fd.Close()
	rd, err := car.NewBlockReader(fd, car.WithTrustedCAR(false))
	if err != nil {
		return err
	}
	for {
		blk, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		delete(missing, blk.Cid())
	}
	if len(missing) > 0 {
		return fmt.Errorf("header lists root(s) not present as a block: %v", missing)
	}
	return nil
}

func cmdExtract(args []string) error {
	fs := flag.NewFlagSet("extract", flag.ContinueOnError)
	in := fs.String("f", "", "the CAR file to extract from")
	fs.StringVar(in, "file", "", "the CAR file to extract from")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" {
		return errors.New("usage: car extract -f FILE.car [OUTDIR]")
	}
	outDir := "."
	if fs.NArg() > 0 {
		outDir = fs.Arg(0)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	f, err := os.Open(*in)
	if err != nil {
		return err
	}
	defer f.Close()
	store, err := carstorage.OpenReadable(f)
	if err != nil {
		return err
	}
	ls := cidlink.DefaultLinkSystem()
	ls.TrustedStorage = true
	ls.SetReadStorage(store)
	for _, root := range store.Roots() {
		if err := extractNode(context.Background(), &ls, cidlink.Link{Cid: root}, outDir, true); err != nil {
			return fmt.Errorf("%s: %w", root, err)
		}
	}
	return nil
}

// extractNode writes the node at l to target; a root that is a file is written as target/unknown, as
// go-car names it.
func extractNode(ctx context.Context, ls *ipld.LinkSystem, l ipld.Link, target string, isRoot bool) error {
	if l.(cidlink.Link).Cid.Prefix().Codec == cid.Raw {
		if isRoot {
			target = filepath.Join(target, "unknown")
		}
		n, err := ls.Load(ipld.LinkContext{}, l, basicnode.Prototype.Any)
		if err != nil {
			return err
		}
		return writeFile(ctx, ls, n, target)
	}
	n, err := ls.Load(ipld.LinkContext{}, l, dagpb.Type.PBNode)
	if err != nil {
		return err
	}
	pbnode := n.(dagpb.PBNode)
	if !pbnode.FieldData().Exists() {
		return errors.New("dag-pb node without UnixFS data")
	}
	ufs, err := data.DecodeUnixFSData(pbnode.FieldData().Must().Bytes())
	if err != nil {
		return err
	}
	switch ufs.DataType.Int() {
	case data.Data_Directory, data.Data_HAMTShard:
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		dir, err := unixfsnode.Reify(ipld.LinkContext{}, pbnode, ls)
		if err != nil {
			return err
		}
		it := dir.MapIterator()
		for !it.Done() {
			k, v, err := it.Next()
			if err != nil {
				return err
			}
			name, err := k.AsString()
			if err != nil {
				return err
			}
			if name == "" || name == "." || name == ".." || bytes.ContainsRune([]byte(name), '/') {
				return fmt.Errorf("refusing entry name %q", name)
			}
			child, err := v.AsLink()
			if err != nil {
				return err
			}
			if err := extractNode(ctx, ls, child, filepath.Join(target, name), false); err != nil {
				return err
			}
		}
		return nil
	case data.Data_File, data.Data_Raw:
		if isRoot {
			target = filepath.Join(target, "unknown")
		}
		return writeFile(ctx, ls, pbnode, target)
	case data.Data_Symlink:
		return os.Symlink(string(ufs.Data.Must().Bytes()), target)
	default:
		return fmt.Errorf("unknown unixfs type: %d", ufs.DataType.Int())
	}
}

func writeFile(ctx context.Context, ls *ipld.LinkSystem, n ipld.Node, target string) error {
	node, err := file.NewUnixFSFile(ctx, n, ls)
	if err != nil {
		return err
	}
	rd, err := node.AsLargeBytes()
	if err != nil {
		return err
	}
	f, err := os.Create(target)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rd); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
