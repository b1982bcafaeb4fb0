import sys

from interhandgen.cli import main

sys.exit(main())
