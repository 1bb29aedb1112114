import uvloop

from orders.main import main

uvloop.run(main())
