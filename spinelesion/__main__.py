import sys

from spinelesion.cli import main

sys.exit(main())
