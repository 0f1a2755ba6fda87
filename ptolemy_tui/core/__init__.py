"""Pure core: formats (CID, UnixFS, dag-pb, CAR), CommP, packing and sizes. No database, no UI."""
