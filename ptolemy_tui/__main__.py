import sys

from ptolemy_tui.cli import main

sys.exit(main())
