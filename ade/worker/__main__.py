import sys

from ade.worker.main import main

sys.exit(main())
