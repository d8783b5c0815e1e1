"""ROS interop without a ROS installation: bag sources, ROS-typed messages, and the message
definitions rosbags lacks (``msg/``, kept as data). Everything here imports ``rosbags`` lazily
(the ``ros`` extra), so ``import edgecv.runtimes`` stays light."""
