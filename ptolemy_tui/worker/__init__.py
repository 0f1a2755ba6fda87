"""Build worker: the subprocess that claims containers and writes CARs (`ptolemy worker`, spawned detached by
`ptolemy build`). Modules:

- main: the loop (register, pause/serial-space/claim/build, stop) and signal handling;
- (claims, leases and every state write live in store/transitions.py);
- reporter: the once-a-second report thread that also renews the lease (its own store connection);
- container: one container in one pass (CAR + CommP from the same bytes, fsync, rename to <pieceCID>.car);
- staging: file names in staging, disk usage, the serial space/budget check;
- settings: lease/report/poll intervals and the staging reserve (environment overrides for tests);
- launch: spawning detached workers; dbretry: riding out store restarts.
"""
