import sys

from tsym.cli import main

sys.exit(main())
