import uvloop

from gateway.main import main

uvloop.run(main())
