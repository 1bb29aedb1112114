import uvloop

from inventory.main import main

uvloop.run(main())
